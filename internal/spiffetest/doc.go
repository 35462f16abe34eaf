// Package spiffetest runs agentauthz against a real SPIRE server and agent (internal/spire):
// gRPC over SPIFFE mTLS with the X.509-SVIDs SPIRE mints, agents identified by JWT-SVIDs
// validated against the bundles of the Workload API, and the whole front proxy — real Envoy
// running envoy/front-proxy.yaml with its certificates over SDS from the SPIRE agent, the demo
// agent's SVID from the Workload API, agentauthz over mTLS — across SVID rotations. It holds only
// tests; without SPIRE (AGENTAUTHZ_SPIRE_BIN, built from internal/tools/spire, see .ci/run) or
// Envoy (internal/envoyproc) they skip, or fail when CI is set.
package spiffetest
