package authzen_test

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/agentauthz/agentauthz/internal/authzen"
)

const orders = "spiffe://acme.internal/pep/orders-gateway"

var ticketEval = httpEval(helpdesk, "GET", helpdeskAt+"/v1/tickets/4711", nil)

// TestUnauthenticated: a call without a PEP token (or, on the TLS listener, a SPIFFE
// certificate) gets 401 with WWW-Authenticate and the request id, before its body is read:
// nothing is evaluated or recorded.
func TestUnauthenticated(t *testing.T) {
	p := startPDP(t)
	for _, tc := range []struct {
		name   string
		header []string // name, value pairs; repeated names are sent repeated
	}{
		{"no credential", nil},
		{"wrong token", []string{"Authorization", "Bearer not-a-pep"}},
		{"the token's hash", []string{"Authorization", "Bearer " + sha256hex(pepToken)}},
		{"basic scheme", []string{"Authorization", "Basic " + pepToken}},
		{"no scheme", []string{"Authorization", pepToken}},
		{"empty token", []string{"Authorization", "Bearer "}},
		{"two authorization headers", []string{"Authorization", "Bearer " + pepToken, "Authorization", "Bearer " + pepToken}},
		{"token in another header", []string{"X-Api-Key", pepToken}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{authzen.EvaluationPath, authzen.EvaluationsPath} {
				req, err := http.NewRequest("POST", p.base+path, strings.NewReader("not even JSON"))
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-Request-ID", "unauth-1")
				for i := 0; i < len(tc.header); i += 2 {
					req.Header.Add(tc.header[i], tc.header[i+1])
				}
				resp, err := plainClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer ") ||
					resp.Header.Get("X-Request-ID") != "unauth-1" {
					t.Errorf("%s: %d WWW-Authenticate=%q X-Request-ID=%q", path, resp.StatusCode,
						resp.Header.Get("WWW-Authenticate"), resp.Header.Get("X-Request-ID"))
				}
			}
		})
	}
	if n := len(p.decisions.records()); n != 0 {
		t.Errorf("%d decisions recorded for unauthenticated calls", n)
	}
}

func sha256hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// TestCallersOverMTLS: on the AuthZEN listener's SPIFFE TLS, an allowed PEP's SVID may ask about
// any agent; any other SVID may ask only about itself (403 otherwise, with nothing evaluated,
// even in a batch where only one subject is another's); a token is judged alone; a certificate
// from another CA never gets past the handshake.
func TestCallersOverMTLS(t *testing.T) {
	p := startPDP(t, withTLS(t, orders))
	pep := p.pki.client(p.pki.svid(t, orders))
	agent := p.pki.client(p.pki.svid(t, helpdesk))
	anonymous := p.pki.client(nil)
	tokenHeader := map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + pepToken}
	plain := map[string]string{"Content-Type": "application/json"}
	self := jsonText(t, ticketEval)
	aboutBI := jsonText(t, httpEval(bi, "GET", helpdeskAt+"/v1/tickets/4711", nil))
	selfAsUser := jsonText(t, map[string]any{"subject": map[string]any{"type": "user", "id": helpdesk},
		"action": map[string]any{"name": "GET"}, "resource": map[string]any{"type": "http", "id": helpdeskAt + "/v1/tickets/4711"}})
	mixed := jsonText(t, map[string]any{"action": map[string]any{"name": "GET"},
		"resource": map[string]any{"type": "http", "id": helpdeskAt + "/v1/tickets/4711"},
		"evaluations": []any{
			map[string]any{"subject": map[string]any{"type": "agent", "id": helpdesk}},
			map[string]any{"subject": map[string]any{"type": "agent", "id": bi}},
		}})
	selfBatch := jsonText(t, map[string]any{"subject": map[string]any{"type": "agent", "id": helpdesk},
		"action": map[string]any{"name": "GET"},
		"evaluations": []any{
			map[string]any{"resource": map[string]any{"type": "http", "id": helpdeskAt + "/v1/tickets/1"}},
			map[string]any{"resource": map[string]any{"type": "http", "id": helpdeskAt + "/v1/tickets/2"}},
		}})
	for _, tc := range []struct {
		name   string
		client *http.Client
		header map[string]string
		path   string
		body   string
		want   int
	}{
		{"allowed PEP about an agent", pep, plain, authzen.EvaluationPath, aboutBI, 200},
		{"allowed PEP, a batch of two agents", pep, plain, authzen.EvaluationsPath, mixed, 200},
		{"agent about itself", agent, plain, authzen.EvaluationPath, self, 200},
		{"agent about itself in a batch", agent, plain, authzen.EvaluationsPath, selfBatch, 200},
		{"agent about another agent", agent, plain, authzen.EvaluationPath, aboutBI, 403},
		{"agent about itself and another", agent, plain, authzen.EvaluationsPath, mixed, 403},
		{"agent about itself as a user", agent, plain, authzen.EvaluationPath, selfAsUser, 403},
		{"agent with a PEP token", agent, tokenHeader, authzen.EvaluationPath, aboutBI, 200},
		{"agent with a wrong token", agent, map[string]string{"Content-Type": "application/json", "Authorization": "Bearer nope"}, authzen.EvaluationPath, self, 401},
		{"no certificate, a PEP token", anonymous, tokenHeader, authzen.EvaluationPath, aboutBI, 200},
		{"no certificate, no token", anonymous, plain, authzen.EvaluationPath, self, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(p.decisions.records())
			r := do(t, call{url: p.tlsBase + tc.path, body: tc.body, header: tc.header, client: tc.client})
			if r.status != tc.want {
				t.Fatalf("%d, want %d: %s", r.status, tc.want, r.body)
			}
			if r.status != 200 && len(p.decisions.records()) != before {
				t.Errorf("a refused call was evaluated")
			}
		})
	}

	// The plaintext HTTP listener has no certificates: an agent there has only tokens.
	if r := do(t, call{url: p.base + authzen.EvaluationPath, body: self, header: plain}); r.status != 401 {
		t.Errorf("plaintext listener without a token: %d", r.status)
	}

	// A certificate of another trust domain's CA fails the handshake.
	stranger := newPKI(t)
	c := stranger.client(stranger.svid(t, helpdesk))
	c.Transport.(*http.Transport).TLSClientConfig.VerifyConnection = nil // trust any server: the server must refuse
	req, _ := http.NewRequest("POST", p.tlsBase+authzen.EvaluationPath, strings.NewReader(self))
	if resp, err := c.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("a certificate from an unknown CA got %d", resp.StatusCode)
	}
}

// TestBatchShortCircuits: the short-circuit semantics evaluate nothing after the decision that
// ends them (the decision log has one record per evaluation run), and execute_all runs them all.
func TestBatchShortCircuits(t *testing.T) {
	p := startPDP(t)
	batch := func(semantic string) map[string]any {
		return map[string]any{
			"subject": map[string]any{"type": "agent", "id": helpdesk}, "action": map[string]any{"name": "GET"},
			"options": map[string]any{"evaluations_semantic": semantic},
			"evaluations": []any{
				map[string]any{"resource": map[string]any{"type": "http", "id": helpdeskAt + "/v1/admin"}},
				map[string]any{"resource": map[string]any{"type": "http", "id": helpdeskAt + "/v1/tickets/1"}},
				map[string]any{"resource": map[string]any{"type": "http", "id": helpdeskAt + "/v1/tickets/2"}},
				map[string]any{"resource": map[string]any{"type": "http", "id": helpdeskAt + "/v1/admin/users"}},
			},
		}
	}
	for _, tc := range []struct {
		semantic string
		want     []bool
	}{
		{"execute_all", []bool{false, true, true, false}},
		{"deny_on_first_deny", []bool{false}},
		{"permit_on_first_permit", []bool{false, true}},
	} {
		before := len(p.decisions.records())
		got := p.evaluations(t, batch(tc.semantic))
		var decisions []bool
		for _, v := range got {
			decisions = append(decisions, v.Decision)
		}
		if !slices.Equal(decisions, tc.want) {
			t.Errorf("%s: %v, want %v", tc.semantic, decisions, tc.want)
		}
		if n := len(p.decisions.records()) - before; n != len(tc.want) {
			t.Errorf("%s: %d evaluations recorded, want %d", tc.semantic, n, len(tc.want))
		}
	}
}

func TestReadTokens(t *testing.T) {
	dir := t.TempDir()
	write := func(text string) string {
		path := filepath.Join(dir, "peps.yaml")
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	good := "peps:\n  - name: orders-gateway\n    token_sha256: " + sha256hex("t1") + "\n  - name: billing\n    token_sha256: " + sha256hex("t2") + "\n"
	tokens, err := authzen.ReadTokens(write(good))
	if err != nil || tokens.Len() != 2 {
		t.Fatalf("ReadTokens: %v, %d tokens", err, tokens.Len())
	}
	for _, tc := range []struct{ text, want string }{
		{"", "the file is empty"},
		{"peps: []\n", "no PEPs"},
		{"pep: []\n", "field pep not found"},
		{"peps:\n  - name: a\n    token_sha256: abc\n", "64 hex digits"},
		{"peps:\n  - token_sha256: " + sha256hex("t1") + "\n", "name is empty"},
		{"peps:\n  - name: a\n    token_sha256: " + sha256hex("t1") + "\n  - name: a\n    token_sha256: " + sha256hex("t2") + "\n", "listed twice"},
		{"peps:\n  - name: a\n    token_sha256: " + sha256hex("t1") + "\n  - name: b\n    token_sha256: " + sha256hex("t1") + "\n", "same token as a"},
		{"peps:\n  - name: a\n    token: t1\n", "field token not found"},
	} {
		if _, err := authzen.ReadTokens(write(tc.text)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ReadTokens(%q) = %v, want %q", tc.text, err, tc.want)
		}
	}
}
