// Package e2e holds the end-to-end tests: the demo's two stories and the product's denials and
// failures, over real HTTP from agents through real Envoy (envoy/front-proxy.yaml) to real
// agentauthz and the demo APIs, all on loopback (internal/stack). It has no code of its own.
//
//	go test ./internal/e2e/
//
// They need Envoy 1.40 (internal/envoyproc finds it); without it they skip, or fail under CI.
package e2e
