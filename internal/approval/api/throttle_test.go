package api_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/api"
	"github.com/agentauthz/agentauthz/internal/approval/memstore"
	"github.com/agentauthz/agentauthz/internal/approval/throttle"
)

// TestAPIThrottle: a refused credential is a failed sign-in of the caller's address; after
// Burst of them the address gets 429 with Retry-After on every route, the right token included.
// A call without credentials, a failing authenticator or a workload are not failures, and
// another address is not affected.
func TestAPIThrottle(t *testing.T) {
	failing := false
	a := &api.API{Store: memstore.New(), Throttle: &throttle.Limiter{Burst: 3},
		Auth: authFunc(func(r *http.Request) (approval.Approver, error) {
			switch r.Header.Get("Authorization") {
			case "Bearer " + aliceToken:
				if failing {
					return approval.Approver{}, errors.New("the IdP is down")
				}
				return approval.Approver{Name: "alice"}, nil
			case "Bearer workload":
				return approval.Approver{Name: "spiffe://example.test/agent/payer"}, nil
			}
			return approval.Approver{}, api.ErrUnauthenticated
		})}
	mux := http.NewServeMux()
	a.Register(mux)
	mux.HandleFunc("GET /v1/decision-log/head", func(w http.ResponseWriter, r *http.Request) {
		if a.Authenticate(w, r) {
			w.WriteHeader(http.StatusOK)
		}
	})
	do := func(from, path, auth string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", path, nil)
		r.RemoteAddr = from
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, r)
		return w
	}
	const attacker, approver = "203.0.113.66:1", "198.51.100.1:1"
	for range 10 {
		if w := do(attacker, "/v1/approvals", ""); w.Code != http.StatusUnauthorized {
			t.Fatalf("no credential: %d", w.Code)
		}
		if w := do(attacker, "/v1/approvals", "Bearer workload"); w.Code != http.StatusForbidden {
			t.Fatalf("workload: %d", w.Code)
		}
	}
	failing = true
	for range 10 {
		if w := do(attacker, "/v1/approvals", "Bearer "+aliceToken); w.Code != http.StatusServiceUnavailable {
			t.Fatalf("failing authenticator: %d", w.Code)
		}
	}
	failing = false
	if w := do(attacker, "/v1/approvals", "Bearer "+aliceToken); w.Code != http.StatusOK {
		t.Fatalf("none of those was a failed sign-in, yet: %d %s", w.Code, w.Body)
	}
	for i, auth := range []string{"Bearer wrong", "Basic YWxpY2U6eA==", aliceToken} {
		if w := do(attacker, "/v1/approvals", auth); w.Code != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d", i, w.Code)
		}
	}
	for _, path := range []string{"/v1/approvals", "/v1/approvals/apr_aaaaaaaaaaaaaaaaaaaaaaaaaa", "/v1/decision-log/head"} {
		w := do(attacker, path, "Bearer "+aliceToken)
		if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "30" ||
			!strings.Contains(w.Body.String(), `"code":"throttled"`) || w.Header().Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s while throttled: %d %v %s", path, w.Code, w.Header(), w.Body)
		}
	}
	if w := do(approver, "/v1/approvals", "Bearer "+aliceToken); w.Code != http.StatusOK {
		t.Errorf("another address while the attacker is throttled: %d %s", w.Code, w.Body)
	}
}
