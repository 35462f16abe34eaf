// Package spiffetest runs agentauthz against a real SPIRE server and agent: gRPC over SPIFFE
// mTLS with the X.509-SVIDs SPIRE mints, and agents identified by JWT-SVIDs validated against
// the bundles of the Workload API. It holds only tests; the SPIRE binaries are built from
// internal/tools/spire (see .ci/run) and found through AGENTAUTHZ_SPIRE_BIN.
package spiffetest
