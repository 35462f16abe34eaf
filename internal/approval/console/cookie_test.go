package console_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/api"
	"github.com/agentauthz/agentauthz/internal/approval/console"
	"github.com/agentauthz/agentauthz/internal/approval/memstore"
	"github.com/agentauthz/agentauthz/internal/approval/signin"
	"github.com/agentauthz/agentauthz/internal/approval/throttle"
)

// signInOn signs in to a console through its handler, on a connection accepted at local (nil:
// no connection address known), with the headers given as name, value pairs.
func signInOn(t *testing.T, c *console.Console, local net.Addr, remote, token string, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	mux := http.NewServeMux()
	c.Register(mux)
	r := httptest.NewRequest("POST", "http://agentauthz.example/approvals/api/session", strings.NewReader(`{"token":"`+token+`"}`))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	r.RemoteAddr = remote
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	if local != nil {
		r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, local))
	}
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, r)
	return w
}

func newConsole(behindProxy bool, lim *throttle.Limiter) *console.Console {
	store := memstore.New()
	a := &api.API{Store: store, Throttle: lim, Auth: signin.NewTokens(map[string]approval.Approver{
		consoleAliceToken: {Name: "alice", Groups: []string{"it-admins"}},
	})}
	return &console.Console{API: a, BehindTLSProxy: behindProxy}
}

// TestConsoleCookieSecure: the session cookie is Secure unless the console is served in
// plaintext on a loopback connection; behind a TLS-terminating proxy it is Secure there too,
// and no header a client sends changes that.
func TestConsoleCookieSecure(t *testing.T) {
	loopback := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9002}
	loopback6 := &net.TCPAddr{IP: net.IPv6loopback, Port: 9002}
	network := &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 9002}
	for _, tc := range []struct {
		what        string
		behindProxy bool
		local       net.Addr
		hdr         []string
		secure      bool
	}{
		{"plaintext on loopback", false, loopback, nil, false},
		{"plaintext on IPv6 loopback", false, loopback6, nil, false},
		{"plaintext on loopback, claiming https", false, loopback, []string{"X-Forwarded-Proto", "https", "Forwarded", "proto=https"}, false},
		{"plaintext on a network address (--insecure)", false, network, nil, true},
		{"plaintext on a network address, claiming http", false, network, []string{"X-Forwarded-Proto", "http"}, true},
		{"no connection address", false, nil, nil, true},
		{"behind a TLS proxy on loopback", true, loopback, nil, true},
		{"behind a TLS proxy on loopback, claiming http", true, loopback, []string{"X-Forwarded-Proto", "http"}, true},
		{"behind a TLS proxy on a network address", true, network, nil, true},
	} {
		w := signInOn(t, newConsole(tc.behindProxy, nil), tc.local, "192.0.2.1:5000", consoleAliceToken, tc.hdr...)
		cks := w.Result().Cookies()
		if w.Code != http.StatusOK || len(cks) != 1 {
			t.Errorf("%s: sign-in %d %v", tc.what, w.Code, cks)
			continue
		}
		if cks[0].Secure != tc.secure || !cks[0].HttpOnly || cks[0].SameSite != http.SameSiteStrictMode {
			t.Errorf("%s: cookie Secure=%v HttpOnly=%v SameSite=%v, want Secure=%v", tc.what, cks[0].Secure, cks[0].HttpOnly, cks[0].SameSite, tc.secure)
		}
	}
}

// TestConsoleSignInThrottled: the console's sign-in is throttled by the client's address, not
// by what its headers claim (behind a proxy too), and another address still signs in.
func TestConsoleSignInThrottled(t *testing.T) {
	lim := &throttle.Limiter{Burst: 3}
	c := newConsole(true, lim)
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9002}
	for i := range 3 {
		if w := signInOn(t, c, local, "192.0.2.66:4000", "wrong", "X-Forwarded-For", "203.0.113."+strconv.Itoa(i+1)); w.Code != http.StatusUnauthorized {
			t.Fatalf("wrong token %d: %d %s", i, w.Code, w.Body)
		}
	}
	w := signInOn(t, c, local, "192.0.2.66:4001", consoleAliceToken, "X-Forwarded-For", "198.51.100.7")
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "30" || !strings.Contains(w.Body.String(), `"code":"throttled"`) {
		t.Errorf("after 3 failures: %d %v %s, want 429 with Retry-After 30", w.Code, w.Header(), w.Body)
	}
	if w := signInOn(t, c, local, "192.0.2.67:4000", consoleAliceToken); w.Code != http.StatusOK {
		t.Errorf("another address: %d %s, want 200", w.Code, w.Body)
	}
	for range 10 { // the empty token is not a guess
		if w := signInOn(t, c, local, "192.0.2.68:4000", ""); w.Code != http.StatusUnauthorized {
			t.Errorf("empty token: %d", w.Code)
		}
	}
	if w := signInOn(t, c, local, "192.0.2.68:4000", consoleAliceToken); w.Code != http.StatusOK {
		t.Errorf("after empty tokens: %d %s, want 200", w.Code, w.Body)
	}
}
