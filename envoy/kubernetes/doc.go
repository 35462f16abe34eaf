// Package kubernetes holds the tests of agentauthz's Kubernetes, Istio and Envoy Gateway
// manifests in this directory (README.md): the Helm chart rendered with the Helm library and
// every manifest decoded strictly into its upstream Go type. It is a module of its own, so that
// the Kubernetes, Istio, Envoy Gateway and Helm libraries stay out of agentauthz's.
package kubernetes
