// Package release holds the tests of the release configuration at the repository's root:
// .goreleaser.yaml, whose builds they run with `go build` exactly as it says (three platforms,
// cross-compiled) and whose binaries they inspect (static, stamped, no build paths), and
// Containerfile, whose facts they check (base image pinned by digest, non-root user, OCI labels,
// only the agentauthz binary). `goreleaser check` validates the rest of .goreleaser.yaml in CI.
package release
