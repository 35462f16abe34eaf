// Package demo embeds the demo policy: ACME's helpdesk and BI agents and the two internal APIs
// they call. `agentauthz serve` without --policy serves it; the README, the compose demo and the
// tests use it.
package demo

import (
	"embed"
	"log/slog"

	"github.com/agentauthz/agentauthz/policy"
)

// Files holds the demo policy under policy/.
//
//go:embed policy
var Files embed.FS

// Dir is the directory of the policy files inside Files.
const Dir = "policy"

// FakeCredential is what the demo injects for a credential that is not configured.
const FakeCredential = "demo-not-a-real-token"

// Secrets reads credentials like policy.EnvAndFiles, but stands in FakeCredential for any that
// is not set, with a warning: the demo must start on a fresh machine.
func Secrets(log *slog.Logger) policy.SecretSource {
	return func(ref policy.SecretRef) (string, error) {
		v, err := policy.EnvAndFiles(ref)
		if err != nil {
			log.Warn("demo mode: injecting a fake credential; set the real one before calling real APIs",
				"credential", ref.String(), "value", FakeCredential)
			return FakeCredential, nil
		}
		return v, nil
	}
}

// Load compiles the demo policy.
func Load(log *slog.Logger) (*policy.Snapshot, error) {
	files, err := policy.ReadFS(Files, Dir)
	if err != nil {
		return nil, err
	}
	return policy.Load(files, policy.Options{Secrets: Secrets(log)})
}
