package main

import (
	"bytes"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.yaml.in/yaml/v3"

	"github.com/agentauthz/agentauthz/internal/demo"
	"github.com/agentauthz/agentauthz/policy"
	"github.com/agentauthz/agentauthz/policy/decision"
)

// The throughput the envoy mode compares with the no-op set-up is that of the authorization
// check itself. The demo policy also has response rules, and on their routes Envoy sends the
// upstream's answer to agentauthz as well (ext_proc), a round trip the none and noop set-ups
// never make. So the agentauthz and agentauthz-log-off set-ups serve a copy of the demo policy
// with its response rules removed, and agentauthz-guarded serves it as shipped, on the scenarios
// where a rule applies: what the response guard costs is the difference between the two.

// serveEnv is the environment every agentauthz the harness starts runs with: the demo policy's
// injected credential (which serve --policy reads from the environment, with no stand-in) and
// the demo approver's token (which serve without --policy would otherwise generate and log).
var serveEnv = []string{"AGENTAUTHZ_HELPDESK_TOKEN=bench-token", "AGENTAUTHZ_DEMO_APPROVER_TOKEN=bench"}

// responseKey is the key of a response rule, wherever it sits in a policy file: on a route, an
// OpenAPI operation, an MCP tool.
const responseKey = "response"

// writeUnguardedDemo writes every file of the embedded demo policy into dir: each policy file
// (policy.IsPolicyFile) with every mapping entry whose key is response removed, at any depth,
// every other file byte for byte. It returns how many entries it removed.
func writeUnguardedDemo(dir string) (int, error) {
	sub, err := fs.Sub(demo.Files, demo.Dir)
	if err != nil {
		return 0, err
	}
	if err := os.CopyFS(dir, sub); err != nil {
		return 0, fmt.Errorf("copying the demo policy: %v", err)
	}
	removed := 0
	err = fs.WalkDir(sub, ".", func(name string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || !policy.IsPolicyFile(name) {
			return err
		}
		src, err := fs.ReadFile(sub, name)
		if err != nil {
			return err
		}
		out, n, err := withoutKey(src, responseKey)
		if err != nil {
			return fmt.Errorf("%s: %v", path.Join(demo.Dir, name), err)
		}
		removed += n
		return os.WriteFile(filepath.Join(dir, filepath.FromSlash(name)), out, 0o644)
	})
	return removed, err
}

// withoutKey is the YAML document src with every mapping entry whose key is key removed, and
// how many were. The document is edited as a node tree and written back: comments stay, layout
// may change.
func withoutKey(src []byte, key string) ([]byte, int, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, 0, err
	}
	n := removeKey(&doc, key)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, 0, err
	}
	if err := enc.Close(); err != nil {
		return nil, 0, err
	}
	return buf.Bytes(), n, nil
}

// removeKey removes the entries whose key is key from every mapping under n, and counts them.
func removeKey(n *yaml.Node, key string) int {
	removed := 0
	if n.Kind == yaml.MappingNode {
		kept := n.Content[:0]
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := n.Content[i]; k.Kind == yaml.ScalarNode && k.Value == key {
				removed++
				continue
			}
			kept = append(kept, n.Content[i], n.Content[i+1])
		}
		n.Content = kept
	}
	for _, c := range n.Content {
		removed += removeKey(c, key)
	}
	return removed
}

// loadPolicyDir loads the policy in dir as `agentauthz serve --policy dir` does (policy.ReadPath,
// then policy.Load reading credentials from the environment), with env, the environment the
// server gets on top of this process's, in force.
func loadPolicyDir(dir string, env []string) (*policy.Snapshot, error) {
	files, err := policy.ReadPath(dir)
	if err != nil {
		return nil, err
	}
	secrets := func(ref policy.SecretRef) (string, error) {
		for _, kv := range env {
			if k, v, _ := strings.Cut(kv, "="); ref.Env != "" && k == ref.Env {
				return v, nil
			}
		}
		return policy.EnvAndFiles(ref)
	}
	return policy.Load(files, policy.Options{Secrets: secrets})
}

// loadShippedDemo loads the embedded demo policy as `agentauthz serve` without --policy does.
func loadShippedDemo() (*policy.Snapshot, error) {
	return demo.Load(slog.New(slog.DiscardHandler))
}

// markGuarded decides each scenario's request with the demo policy as shipped and without its
// response rules: both must allow it, the second with no response rule. A scenario is guarded
// when the first names one: agentauthz-guarded runs it.
func markGuarded(scenarios []httpScenario, shipped, unguarded *policy.Snapshot) error {
	for i := range scenarios {
		sc := &scenarios[i]
		d, err := decide(shipped, sc)
		if err != nil {
			return err
		}
		if !d.Allowed() {
			return fmt.Errorf("the demo policy refuses %s: %s %s", sc.name, d.Code, d.Detail)
		}
		u, err := decide(unguarded, sc)
		if err != nil {
			return err
		}
		if !u.Allowed() || u.Response != "" {
			return fmt.Errorf("the demo policy without response rules: %s: %s %s, response rule %q", sc.name, u.Code, u.Detail, u.Response)
		}
		sc.guarded = d.Response != ""
	}
	return nil
}

// decide is snap's decision on sc's request as Envoy would have it checked.
func decide(snap *policy.Snapshot, sc *httpScenario) (decision.Decision, error) {
	req, err := sc.target.Request()
	if err != nil {
		return decision.Decision{}, err
	}
	agent, err := spiffeid.FromString(sc.agent)
	if err != nil {
		return decision.Decision{}, err
	}
	return snap.Decide(&policy.Request{Agent: agent, Method: req.Method, Host: req.URL.Host, Target: req.URL.RequestURI(),
		Headers: requestHeaders(req.Header), Body: sc.target.Body}), nil
}

// requestHeaders reads an http.Header as policy.Headers.
type requestHeaders http.Header

func (h requestHeaders) Get(name string) (string, int) {
	v := h[http.CanonicalHeaderKey(name)]
	if len(v) == 0 {
		return "", 0
	}
	return v[0], len(v)
}
