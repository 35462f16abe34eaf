package signin_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/api"
	"github.com/agentauthz/agentauthz/internal/approval/signin"
)

// The tokens of testdata/approvers.yaml.
const (
	aliceToken = "alice-token" // alice: it-admins, finance
	bobToken   = "bob-token"   // bob: sales
	carolToken = "carol-token" // carol: no group
)

const approversFile = "testdata/approvers.yaml"

func sha(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func writeTemp(t *testing.T, name, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func withBearer(auth ...string) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1/v1/approvals", nil)
	for _, a := range auth {
		r.Header.Add("Authorization", a)
	}
	return r
}

func TestReadTokens(t *testing.T) {
	tokens, err := signin.ReadTokens(approversFile)
	if err != nil {
		t.Fatalf("ReadTokens(%s): %v", approversFile, err)
	}
	for _, tc := range []struct {
		auth   []string
		name   string
		groups []string
	}{
		{[]string{"Bearer " + aliceToken}, "alice", []string{"it-admins", "finance"}},
		{[]string{"bearer " + bobToken}, "bob", []string{"sales"}},
		{[]string{"BEARER " + carolToken}, "carol", nil},
	} {
		p, err := tokens.Authenticate(withBearer(tc.auth...))
		if err != nil || p.Name != tc.name || strings.Join(p.Groups, ",") != strings.Join(tc.groups, ",") {
			t.Errorf("Authenticate(%q) = %+v, %v; want %s in %v", tc.auth, p, err, tc.name, tc.groups)
		}
	}
	for _, auth := range [][]string{
		nil,
		{""},
		{"Bearer"},
		{"Bearer "},
		{"Bearer wrong-token"},
		{"Bearer " + sha(aliceToken)}, // the hash is not the token
		{"Basic " + aliceToken},
		{aliceToken},
		{"Bearer " + aliceToken + " "},
		{"Bearer " + aliceToken, "Bearer " + aliceToken}, // two Authorization headers
		{"Bearer " + strings.ToUpper(aliceToken)},
	} {
		if p, err := tokens.Authenticate(withBearer(auth...)); !errors.Is(err, api.ErrUnauthenticated) {
			t.Errorf("Authenticate(%q) = %+v, %v; want ErrUnauthenticated", auth, p, err)
		}
	}
}

func TestReadTokensRefuses(t *testing.T) {
	good := sha("t1")
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"spiffe id", "approvers:\n  - name: spiffe://acme.internal/agent/helpdesk\n    groups: [it-admins]\n    token_sha256: " + good + "\n",
			[]string{"approvers[0]", "spiffe://acme.internal/agent/helpdesk is a workload identity; approvers are people"}},
		{"spiffe id in capitals", "approvers:\n  - name: SPIFFE://acme.internal/agent/helpdesk\n    token_sha256: " + good + "\n",
			[]string{"workload identity"}},
		{"empty name", "approvers:\n  - name: ''\n    token_sha256: " + good + "\n", []string{"approvers[0]: name is empty"}},
		{"twice", "approvers:\n  - name: a\n    token_sha256: " + good + "\n  - name: a\n    token_sha256: " + sha("t2") + "\n",
			[]string{"approvers[1]: a is listed twice"}},
		{"shared token", "approvers:\n  - name: a\n    token_sha256: " + good + "\n  - name: b\n    groups: [it-admins]\n    token_sha256: " + strings.ToUpper(good) + "\n",
			[]string{"approvers[1]: b has the same token as a"}},
		{"short hash", "approvers:\n  - name: a\n    token_sha256: abc123\n", []string{"approvers[0]: token_sha256 must be 64 hex digits"}},
		{"plain token", "approvers:\n  - name: a\n    token_sha256: " + strings.Repeat("z", 64) + "\n", []string{"64 hex digits"}},
		{"no hash", "approvers:\n  - name: a\n", []string{"64 hex digits"}},
		{"unknown field", "approvers:\n  - name: a\n    token: secret\n    token_sha256: " + good + "\n", []string{"token"}},
		{"not a list", "approvers: alice\n", []string{"approvers.yaml"}},
		{"empty", "", []string{"the file is empty"}},
		{"only a comment", "# nobody yet\n", []string{"the file is empty"}},
		{"every problem", "approvers:\n  - name: ''\n    token_sha256: " + good + "\n  - name: spiffe://x/y\n    token_sha256: " + sha("t3") + "\n  - name: c\n",
			[]string{"approvers[0]", "approvers[1]", "approvers[2]"}},
	} {
		p := writeTemp(t, "approvers.yaml", tc.yaml)
		tokens, err := signin.ReadTokens(p)
		if err == nil {
			t.Errorf("%s: ReadTokens accepted\n%s", tc.name, tc.yaml)
			continue
		}
		if tokens != nil {
			t.Errorf("%s: ReadTokens returned tokens with an error", tc.name)
		}
		msg := err.Error()
		if !strings.HasPrefix(msg, p+": ") || strings.Contains(msg, "\n") {
			t.Errorf("%s: the error should be one line naming the file: %q", tc.name, msg)
		}
		for _, w := range tc.want {
			if !strings.Contains(msg, w) {
				t.Errorf("%s: error %q does not say %q", tc.name, msg, w)
			}
		}
	}
	if _, err := signin.ReadTokens(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Error("ReadTokens of a missing file succeeded")
	}
}

func TestNewTokens(t *testing.T) {
	tokens := signin.NewTokens(map[string]approval.Approver{
		"t-alice": {Name: "alice", Groups: []string{"it-admins"}},
		"t-bob":   {Name: "bob"},
	})
	if p, err := tokens.Authenticate(withBearer("Bearer t-bob")); err != nil || p.Name != "bob" {
		t.Errorf("Authenticate(t-bob) = %+v, %v", p, err)
	}
	if _, err := tokens.Authenticate(withBearer("Bearer t-carol")); !errors.Is(err, api.ErrUnauthenticated) {
		t.Errorf("Authenticate(t-carol) = %v", err)
	}
}

type authFunc func(*http.Request) (approval.Approver, error)

func (f authFunc) Authenticate(r *http.Request) (approval.Approver, error) { return f(r) }

func TestChain(t *testing.T) {
	broken := errors.New("identity provider unreachable")
	tokens, err := signin.ReadTokens(approversFile)
	if err != nil {
		t.Fatal(err)
	}
	never := authFunc(func(*http.Request) (approval.Approver, error) {
		return approval.Approver{}, api.ErrUnauthenticated
	})
	fails := authFunc(func(*http.Request) (approval.Approver, error) { return approval.Approver{}, broken })

	if p, err := (signin.Chain{never, tokens}).Authenticate(withBearer("Bearer " + aliceToken)); err != nil || p.Name != "alice" {
		t.Errorf("Chain{never, tokens} = %+v, %v; want alice", p, err)
	}
	if _, err := (signin.Chain{never, tokens}).Authenticate(withBearer("Bearer nope")); !errors.Is(err, api.ErrUnauthenticated) {
		t.Errorf("Chain with no match = %v, want ErrUnauthenticated", err)
	}
	if _, err := (signin.Chain{fails, tokens}).Authenticate(withBearer("Bearer " + aliceToken)); !errors.Is(err, broken) {
		t.Errorf("Chain whose first authenticator fails = %v, want its error (fail closed)", err)
	}
	if _, err := (signin.Chain{}).Authenticate(withBearer("Bearer " + aliceToken)); !errors.Is(err, api.ErrUnauthenticated) {
		t.Errorf("empty Chain = %v, want ErrUnauthenticated", err)
	}
}
