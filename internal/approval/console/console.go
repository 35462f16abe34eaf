// Package console is the approvers' web console on the HTTP listener, beside the approval API.
package console

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/api"
)

// Console is the approvers' web console on the HTTP listener, beside the API:
//
//	GET  /approvals/                   the console (sign-in, pending requests)
//	GET  /approvals/requests/{id}      one request in full, approve or deny
//	GET  /approvals/assets/{name}      its script and style, embedded
//	GET  /approvals/api/session        who is signed in, with the session's CSRF token
//	POST /approvals/api/session        sign in: {"token": "..."}, checked by the API's Authenticator
//	POST /approvals/api/signout        sign out
//	GET  /approvals/history            decided (and any other) requests, with filters
//	GET  /approvals/api/approvals      ?state=pending (the default), a state, decided (every
//	                                   state but pending) or all; agent, rule (exact) and from,
//	                                   to (RFC 3339: created within, inclusive) filter it; paged
//	                                   as the API's list (limit, cursor; next_cursor). more is
//	                                   how many more follow, or, filtered, 1 when more may
//	GET  /approvals/api/approvals/{id}
//	POST /approvals/api/approvals/{id}/approve|deny   {"comment": "..."}
//
// A sign-in makes a server-side session named by an HttpOnly, SameSite=Strict cookie, Secure
// unless the console is served in plaintext to a loopback address (see BehindTLSProxy). Every
// POST but the sign-in carries the session's CSRF token in X-CSRF-Token, and every POST must
// come from the console's own origin (Sec-Fetch-Site, Origin). Deciding takes the API's path
// (api.API.DecideAs): the same approvers rule, audit events and Decided hook.
type Console struct {
	API *api.API
	// SessionTTL is how long a sign-in lasts; 0 means 8 hours.
	SessionTTL time.Duration
	// Links are other ways to sign in (e.g. OIDC), offered on the sign-in page beside the
	// token; their handlers finish with StartSession.
	Links []SignInLink
	// BehindTLSProxy says browsers reach the console through a TLS-terminating proxy: the
	// session cookie is then Secure even on the proxy's plaintext connection to a loopback
	// address. Nothing else (no X-Forwarded-* header) is taken from the proxy.
	BehindTLSProxy bool

	mu       sync.Mutex
	sessions map[[sha256.Size]byte]session // by the SHA-256 of the cookie's value
	origins  http.CrossOriginProtection
}

// SignInLink is a way to sign in other than pasting a token.
type SignInLink struct {
	Label string `json:"label"`
	Href  string `json:"href"`
}

type session struct {
	approver approval.Approver
	csrf     string
	expires  time.Time
}

const (
	// CSRFHeader carries the session's CSRF token on the console's POSTs.
	CSRFHeader    = "X-CSRF-Token"
	sessionCookie = "agentauthz_console"
	consolePath   = "/approvals/"
	maxSessions   = 10000
)

//go:embed index.html console.js console.css
var consoleFiles embed.FS

// consoleHeaders are on every console response. The CSP lets the page load only its own
// script, style and API: no inline script, no other host, no framing.
var consoleHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; " +
		"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
	"X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
	"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Resource-Policy": "same-origin", "Cache-Control": "no-store",
}

// Register adds the console's routes to mux.
func (c *Console) Register(mux *http.ServeMux) {
	in := http.NewServeMux()
	in.Handle("GET /approvals", http.RedirectHandler(consolePath, http.StatusSeeOther))
	in.HandleFunc("GET /approvals/{$}", c.asset("index.html"))
	in.HandleFunc("GET /approvals/requests/{id}", c.asset("index.html"))
	in.HandleFunc("GET /approvals/history", c.asset("index.html"))
	in.HandleFunc("GET /approvals/assets/console.js", c.asset("console.js"))
	in.HandleFunc("GET /approvals/assets/console.css", c.asset("console.css"))
	in.HandleFunc("GET /approvals/api/session", c.whoami)
	in.HandleFunc("POST /approvals/api/session", c.signIn)
	in.HandleFunc("POST /approvals/api/signout", c.signOut)
	in.HandleFunc("GET /approvals/api/approvals", c.list)
	in.HandleFunc("GET /approvals/api/approvals/{id}", c.get)
	in.HandleFunc("POST /approvals/api/approvals/{id}/approve", func(w http.ResponseWriter, r *http.Request) { c.decide(w, r, true) })
	in.HandleFunc("POST /approvals/api/approvals/{id}/deny", func(w http.ResponseWriter, r *http.Request) { c.decide(w, r, false) })
	h := secured(in)
	mux.Handle("/approvals", h)
	mux.Handle(consolePath, h)
}

// secured sets the security headers on every console response and bounds request bodies.
func secured(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range consoleHeaders {
			w.Header().Set(k, v)
		}
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		next.ServeHTTP(w, r)
	})
}

// asset serves one embedded file.
func (c *Console) asset(name string) http.HandlerFunc {
	data, err := consoleFiles.ReadFile(name)
	if err != nil {
		panic("console: asset missing: " + name) // the embed pattern names it
	}
	ctype := mime.TypeByExtension(name[strings.LastIndexByte(name, '.'):])
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", ctype)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	}
}

func (c *Console) ttl() time.Duration {
	if c.SessionTTL > 0 {
		return c.SessionTTL
	}
	return 8 * time.Hour
}

func randomToken() string {
	var b [32]byte         // 256 bits
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func sessionKey(id string) [sha256.Size]byte { return sha256.Sum256([]byte(id)) }

// StartSession signs p in: it stores a new session and sets its cookie. Other sign-in flows
// (OIDC) end here once they have established p, then send the browser to /approvals/.
func (c *Console) StartSession(w http.ResponseWriter, r *http.Request, p approval.Approver) error {
	_, err := c.start(w, r, p)
	return err
}

func (c *Console) start(w http.ResponseWriter, r *http.Request, p approval.Approver) (session, error) {
	if p.Name == "" || approval.IsWorkload(p.Name) {
		return session{}, errors.New("console: only people sign in to the console")
	}
	now := c.API.Now()
	id, s := randomToken(), session{approver: p, csrf: randomToken(), expires: now.Add(c.ttl())}
	c.mu.Lock()
	if c.sessions == nil {
		c.sessions = map[[sha256.Size]byte]session{}
	}
	if old, err := r.Cookie(sessionCookie); err == nil {
		delete(c.sessions, sessionKey(old.Value))
	}
	for k, v := range c.sessions {
		if !now.Before(v.expires) {
			delete(c.sessions, k)
		}
	}
	full := len(c.sessions) >= maxSessions
	if !full {
		c.sessions[sessionKey(id)] = s
	}
	c.mu.Unlock()
	if full {
		return session{}, errors.New("console: too many sessions")
	}
	c.setCookie(w, r, id, int(c.ttl()/time.Second))
	return s, nil
}

func (c *Console) setCookie(w http.ResponseWriter, r *http.Request, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: value, Path: consolePath, MaxAge: maxAge,
		HttpOnly: true, Secure: c.secureCookie(r), SameSite: http.SameSiteStrictMode,
	})
}

// secureCookie says whether the session cookie is Secure: always, but on a plaintext connection
// to a loopback address (a browser on the console's host) unless BehindTLSProxy. A browser then
// never sends the session over plaintext across a network.
func (c *Console) secureCookie(r *http.Request) bool {
	if c.BehindTLSProxy || r.TLS != nil {
		return true
	}
	tcp, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr)
	return !ok || !tcp.IP.IsLoopback()
}

func (s session) view() map[string]any {
	return map[string]any{"signed_in": true, "approver": s.approver.Name, "groups": s.approver.Groups, "csrf": s.csrf, "expires_at": s.expires}
}

// current returns the request's live session.
func (c *Console) current(r *http.Request) (session, bool) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil {
		return session{}, false
	}
	k := sessionKey(ck.Value)
	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.sessions[k]
	if ok && !c.API.Now().Before(s.expires) {
		delete(c.sessions, k)
		ok = false
	}
	return s, ok
}

// signedIn answers 401 or 403 itself and returns false unless r has a live session and, when
// it changes state, comes from the console's own origin with the session's CSRF token.
func (c *Console) signedIn(w http.ResponseWriter, r *http.Request, change bool) (session, bool) {
	if change && !c.sameOrigin(w, r) {
		return session{}, false
	}
	s, ok := c.current(r)
	if !ok {
		api.WriteProblem(w, http.StatusUnauthorized, "unauthenticated", "Sign in to the console.")
		return session{}, false
	}
	if change {
		got := r.Header.Values(CSRFHeader)
		if len(got) != 1 || subtle.ConstantTimeCompare([]byte(got[0]), []byte(s.csrf)) != 1 {
			api.WriteProblem(w, http.StatusForbidden, "csrf", "The request lacks this session's CSRF token; reload the console.")
			return session{}, false
		}
	}
	return s, true
}

// sameOrigin refuses cross-origin browser requests and bodies that are not JSON, which a
// cross-origin form could send without a preflight.
func (c *Console) sameOrigin(w http.ResponseWriter, r *http.Request) bool {
	if err := c.origins.Check(r); err != nil {
		api.WriteProblem(w, http.StatusForbidden, "cross_origin", "The console accepts changes only from its own pages.")
		return false
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		api.WriteProblem(w, http.StatusUnsupportedMediaType, "bad_content_type", "Send application/json.")
		return false
	}
	return true
}

// decodeJSON reads one JSON object with only the fields of v.
func decodeJSON(r *http.Request, v any) error {
	data, err := io.ReadAll(io.LimitReader(r.Body, 16<<10))
	if err != nil || len(bytes.TrimSpace(data)) == 0 {
		return errors.New("no body")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the JSON object")
	}
	return nil
}

func (c *Console) whoami(w http.ResponseWriter, r *http.Request) {
	s, ok := c.current(r)
	if !ok {
		api.WriteJSON(w, http.StatusOK, map[string]any{"signed_in": false, "sign_in": c.Links})
		return
	}
	api.WriteJSON(w, http.StatusOK, s.view())
}

// signIn checks a pasted token with the API's Authenticator, as if it came as a bearer token.
func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	if !c.sameOrigin(w, r) {
		return
	}
	var body struct {
		Token string `json:"token"`
	}
	if err := decodeJSON(r, &body); err != nil {
		api.WriteProblem(w, http.StatusBadRequest, "bad_request", `Send {"token": "..."}.`)
		return
	}
	att, wait := c.API.Throttle.Begin(r, "console")
	if att == nil {
		api.WriteThrottled(w, wait)
		return
	}
	token := strings.TrimSpace(body.Token)
	if scheme, rest, ok := strings.Cut(token, " "); ok && strings.EqualFold(scheme, "Bearer") {
		token = strings.TrimSpace(rest)
	}
	if token == "" || strings.ContainsAny(token, " \t\r\n") {
		if token == "" {
			att.Release()
		} else {
			att.Fail("not a token")
		}
		api.WriteProblem(w, http.StatusUnauthorized, "bad_token", "That is not an approver's token.")
		return
	}
	ar := r.Clone(r.Context())
	ar.Header = http.Header{"Authorization": {"Bearer " + token}}
	p, err := c.API.Auth.Authenticate(ar)
	switch {
	case errors.Is(err, api.ErrUnauthenticated):
		att.Fail(err.Error())
		api.WriteProblem(w, http.StatusUnauthorized, "bad_token", "That is not an approver's token.")
		return
	case err != nil:
		att.Release()
		api.WriteProblem(w, http.StatusServiceUnavailable, "internal_error", "Authentication is unavailable; retry later.")
		return
	case approval.IsWorkload(p.Name):
		att.Release()
		api.WriteProblem(w, http.StatusForbidden, "forbidden", "Workload identities cannot use the console.")
		return
	}
	att.Release()
	s, err := c.start(w, r, p)
	if err != nil {
		api.WriteProblem(w, http.StatusServiceUnavailable, "internal_error", "Too many people are signed in; retry later.")
		return
	}
	if c.API.Log != nil {
		c.API.Log.Info("approver signed in to the console", "approver", p.Name)
	}
	api.WriteJSON(w, http.StatusOK, s.view())
}

func (c *Console) signOut(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.signedIn(w, r, true); !ok {
		return
	}
	if ck, err := r.Cookie(sessionCookie); err == nil {
		c.mu.Lock()
		delete(c.sessions, sessionKey(ck.Value))
		c.mu.Unlock()
	}
	c.setCookie(w, r, "", -1)
	api.WriteJSON(w, http.StatusOK, map[string]any{"signed_out": true})
}

// item is an approval as the console shows it (approval.Approval.Visible: what does not show as
// itself is a \u{XXXX} marker), with why the signed-in approver may not decide it, if they may
// not.
type item struct {
	approval.Approval
	WhyNot string `json:"why_not,omitempty"`
}

// shown is a as the console shows it to p.
func shown(p approval.Approver, a approval.Approval) item {
	return item{a.Visible(), approval.Visible(whyNot(p, a))}
}

// whyNot says why p cannot decide a now, for the page to say beside disabled buttons: the
// API's rule (api.MayDecide, which api.API.DecideAs enforces whatever the page shows), or a's
// state.
func whyNot(p approval.Approver, a approval.Approval) string {
	if a.State != approval.Pending {
		return "it is " + string(a.State)
	}
	return api.MayDecide(p, a)
}

func (c *Console) list(w http.ResponseWriter, r *http.Request) {
	s, ok := c.signedIn(w, r, false)
	if !ok {
		return
	}
	f, ok := readFilter(w, r)
	if !ok {
		return
	}
	q, ok := api.ListQuery(w, f.storeQuery, approval.Pending)
	if !ok {
		return
	}
	if q.State == "" && !f.all && !f.decided {
		q.State = approval.Pending
	}
	now := c.API.Now()
	var page approval.Page
	var err error
	if f.filters() {
		page, err = f.list(r.Context(), c.API.Store, q, now)
	} else {
		page, err = c.API.Store.List(r.Context(), q, now)
	}
	if err != nil {
		c.API.StoreFailed(w, err)
		return
	}
	items := make([]item, len(page.Approvals))
	for i, a := range page.Approvals {
		items[i] = shown(s.approver, a)
	}
	m := api.PageJSON(page, items)
	m["now"] = now
	api.WriteJSON(w, http.StatusOK, m)
}

func (c *Console) get(w http.ResponseWriter, r *http.Request) {
	s, ok := c.signedIn(w, r, false)
	if !ok {
		return
	}
	id := r.PathValue("id")
	if !approval.ValidID(id) {
		api.WriteProblem(w, http.StatusNotFound, "not_found", "No such approval.")
		return
	}
	now := c.API.Now()
	a, err := c.API.Store.Get(r.Context(), id, now)
	if errors.Is(err, approval.ErrNotFound) {
		api.WriteProblem(w, http.StatusNotFound, "not_found", "No such approval.")
		return
	}
	if err != nil {
		c.API.StoreFailed(w, err)
		return
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"approval": shown(s.approver, a), "now": now})
}

func (c *Console) decide(w http.ResponseWriter, r *http.Request, approve bool) {
	s, ok := c.signedIn(w, r, true)
	if !ok {
		return
	}
	var body struct {
		Comment string `json:"comment"`
	}
	if err := decodeJSON(r, &body); err != nil {
		api.WriteProblem(w, http.StatusBadRequest, "bad_request", `Send {"comment": "..."}.`)
		return
	}
	a, refused := c.API.DecideAs(r.Context(), s.approver, r.PathValue("id"), approve, body.Comment, slog.String("via", "console"))
	if refused != nil {
		api.WriteProblem(w, refused.Status, refused.Code, refused.Detail)
		return
	}
	api.WriteJSON(w, http.StatusOK, map[string]any{"approval": shown(s.approver, a), "now": c.API.Now()})
}
