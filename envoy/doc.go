// Package envoy holds Envoy configurations for running agentauthz: front-proxy.yaml, a front
// proxy in front of the agents' APIs, sidecar.yaml, Envoy next to one API, and mcp.yaml, a front
// proxy in front of an MCP server whose lists agentauthz filters. See README.md.
//
// The package has no code. Its test loads every *.yaml here into Envoy's bootstrap proto,
// strictly (an unknown field or a bad enum value fails), runs Envoy's own proto validation on
// the bootstrap and on every typed_config inside it, and checks the settings agentauthz's
// safety depends on: ext_authz fails closed, checks whole bodies only, and cannot be skipped;
// agents must present client certificates; paths are not normalised before the check; an
// agent-supplied X-Forwarded-Client-Cert is never forwarded. Then real Envoy (1.40.0, found by
// internal/envoyproc) validates every file and runs both against test stand-ins for SPIRE's SDS,
// agentauthz and the APIs, pinning what Envoy puts in a CheckRequest and how it applies answers.
package envoy
