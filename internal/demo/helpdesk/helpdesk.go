// Package helpdesk is the demo's helpdesk API, helpdesk.acme.internal: tickets and users in
// memory, behind a bearer token that only agentauthz holds and injects. An agent never holds it:
// a request carrying anything else, the agent's own token included, is refused with 401.
//
//	GET    /v1/tickets?status=open|pending|closed&limit=1..100
//	GET    /v1/tickets/{id}
//	POST   /v1/tickets/{id}/comments             {"body": "..."}
//	POST   /v1/users/{username}/password-reset   {"reason": "...", "notify_user": true}
//	DELETE /v1/tickets/{id}
//	GET    /openapi.json                         this API's OpenAPI description (OpenAPI)
//
// and, over gRPC (RegisterGRPC), acme.helpdesk.v1.Helpdesk/ResetPassword, the password reset
// again, its messages from the demo policy's helpdesk.proto. Other front ends of the same data
// (the MCP server, internal/demo/helpdeskmcp) use Tickets, Ticket, AddComment and ResetPassword
// behind Guard, so what one changes the others show.
//
// cmd/helpdesk-api serves it; the end-to-end tests (internal/e2e) run it in process behind real Envoy.
package helpdesk

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// TokenEnv is the environment variable holding the token, the same one agentauthz injects.
const TokenEnv = "AGENTAUTHZ_HELPDESK_TOKEN"

// Ticket is one helpdesk ticket.
type Ticket struct {
	ID        string `json:"id"`
	Subject   string `json:"subject"`
	Status    string `json:"status"`
	Requester string `json:"requester"`
	// RequesterEmail and RequesterPhone are how to reach the requester: personal data the API
	// returns with every ticket, and that the demo policy's response rules keep from the
	// helpdesk agent.
	RequesterEmail string    `json:"requester_email"`
	RequesterPhone string    `json:"requester_phone"`
	CreatedAt      time.Time `json:"created_at"`
	Comments       []Comment `json:"comments"`
}

// Comment is a comment on a ticket.
type Comment struct {
	ID        int       `json:"id"`
	Body      string    `json:"body"`
	CreatedAt time.Time `json:"created_at"`
}

// PasswordReset is a reset the API performed.
type PasswordReset struct {
	Username   string    `json:"username"`
	Reason     string    `json:"reason"`
	NotifyUser bool      `json:"notify_user"`
	At         time.Time `json:"reset_at"`
}

// Config configures the API. Token is required.
type Config struct {
	// Token is the only credential accepted: Authorization: Bearer <Token>.
	Token string
	// Log receives one line per request; nil discards.
	Log *slog.Logger
	// Clock is injected for tests; nil means time.Now.
	Clock func() time.Time
}

// API is the helpdesk API. It is safe for concurrent use.
type API struct {
	token []byte
	log   *slog.Logger
	clock func() time.Time
	rest  http.Handler // the REST routes behind Guard

	mu      sync.Mutex
	tickets map[string]*Ticket
	users   map[string]bool
	resets  []PasswordReset
}

var validStatus = map[string]bool{"open": true, "pending": true, "closed": true}

// New returns the API with the demo's tickets and users.
func New(cfg Config) (*API, error) {
	if cfg.Token == "" {
		return nil, errors.New("helpdesk: no token configured; set " + TokenEnv + " to the credential agentauthz injects")
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	a := &API{token: []byte("Bearer " + cfg.Token), log: cfg.Log, clock: cfg.Clock, tickets: map[string]*Ticket{}, users: map[string]bool{}}
	seed := time.Date(2026, 9, 1, 9, 0, 0, 0, time.UTC)
	for i, t := range []Ticket{
		{ID: "4711", Subject: "VPN drops every few minutes", Status: "open", Requester: "jdoe", RequesterEmail: "jdoe@acme.example", RequesterPhone: "+1-202-555-0141"},
		{ID: "4712", Subject: "Locked out after travel; password expired", Status: "open", Requester: "jdoe", RequesterEmail: "jdoe@acme.example", RequesterPhone: "+1-202-555-0141"},
		{ID: "4713", Subject: "New laptop for onboarding", Status: "pending", Requester: "asmith", RequesterEmail: "asmith@acme.example", RequesterPhone: "+1-202-555-0172"},
		{ID: "4714", Subject: "Printer on the third floor jams", Status: "closed", Requester: "bwayne", RequesterEmail: "bwayne@acme.example", RequesterPhone: "+1-202-555-0198"},
		{ID: "4715", Subject: "Finance share: permission denied", Status: "open", Requester: "clee", RequesterEmail: "clee@acme.example", RequesterPhone: "+1-202-555-0115"},
	} {
		t.CreatedAt = seed.Add(time.Duration(i) * time.Hour)
		t.Comments = []Comment{}
		a.tickets[t.ID] = &t
		a.users[t.Requester] = true
	}
	mux := http.NewServeMux()
	for _, r := range a.routes() {
		mux.HandleFunc(r.pattern, r.handler)
	}
	a.rest = a.Guard(mux)
	return a, nil
}

// route is one REST route: every one is an operation of the API's OpenAPI description.
type route struct {
	pattern string
	handler http.HandlerFunc
}

func (a *API) routes() []route {
	return []route{
		{"GET /v1/tickets", a.list},
		{"GET /v1/tickets/{id}", a.get},
		{"POST /v1/tickets/{id}/comments", a.comment},
		{"DELETE /v1/tickets/{id}", a.delete},
		{"POST /v1/users/{username}/password-reset", a.reset},
		{"GET " + OpenAPIPath, serveOpenAPI},
	}
}

// statusWriter remembers the status written.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController flush through it, for a guarded handler that streams.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ServeHTTP authenticates the caller, serves the request and logs it.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.rest.ServeHTTP(w, r) }

// Guard puts h behind the API's credential, as the REST routes are: a request without exactly
// one Authorization: Bearer <token> header holding the configured token is answered 401 and
// never reaches h. Each request is logged with whether the injected credential was present.
func (a *API) Guard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		cred := a.credential(r)
		defer func() {
			a.log.Info("request", "method", r.Method, "path", r.URL.Path, "query", r.URL.RawQuery,
				"credential", cred, "status", sw.status)
		}()
		if cred != "injected" {
			sw.Header().Set("www-authenticate", `Bearer realm="helpdesk"`)
			problem(sw, http.StatusUnauthorized, "unauthenticated", "Call this API through agentauthz, which holds its credential.")
			return
		}
		h.ServeHTTP(sw, r)
	})
}

// credential says what the request carried: "injected" (the configured token), "missing" or
// "wrong". The value itself is never logged.
func (a *API) credential(r *http.Request) string {
	return a.checkCredential(r.Header.Values("Authorization"))
}

// checkCredential reads the values of the authorization header (gRPC metadata alike).
func (a *API) checkCredential(vs []string) string {
	switch {
	case len(vs) == 0:
		return "missing"
	case len(vs) == 1 && subtle.ConstantTimeCompare([]byte(vs[0]), a.token) == 1:
		return "injected"
	default:
		return "wrong"
	}
}

func (a *API) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for k := range q {
		if k != "status" && k != "limit" {
			problem(w, http.StatusBadRequest, "query_invalid", "Unknown query parameter "+strconv.Quote(k)+".")
			return
		}
	}
	status := q.Get("status")
	if status != "" && !validStatus[status] {
		problem(w, http.StatusBadRequest, "query_invalid", "status must be open, pending or closed.")
		return
	}
	limit := DefaultLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxLimit {
			problem(w, http.StatusBadRequest, "query_invalid", "limit must be an integer from 1 to 100.")
			return
		}
		limit = n
	}
	reply(w, http.StatusOK, map[string]any{"tickets": a.Tickets(status, limit)})
}

// DefaultLimit and MaxLimit bound a ticket listing.
const (
	DefaultLimit = 20
	MaxLimit     = 100
)

// Tickets returns copies of the tickets with status (any when "") in order of id, at most limit
// of them. The caller has checked status and limit.
func (a *API) Tickets(status string, limit int) []Ticket {
	a.mu.Lock()
	out := []Ticket{}
	for _, t := range a.tickets {
		if status == "" || t.Status == status {
			out = append(out, copyTicket(t))
		}
	}
	a.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	if len(out) > limit {
		out = out[:max(limit, 0)]
	}
	return out
}

func (a *API) get(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	t, ok := a.tickets[r.PathValue("id")]
	var c Ticket
	if ok {
		c = copyTicket(t)
	}
	a.mu.Unlock()
	if !ok {
		problem(w, http.StatusNotFound, "not_found", "No such ticket.")
		return
	}
	reply(w, http.StatusOK, c)
}

func (a *API) comment(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Body string `json:"body"`
	}
	if err := decode(r, &body); err != nil || strings.TrimSpace(body.Body) == "" {
		problem(w, http.StatusBadRequest, "body_invalid", `Send {"body": "..."} with a non-empty comment.`)
		return
	}
	c, ok := a.AddComment(r.PathValue("id"), body.Body)
	if !ok {
		problem(w, http.StatusNotFound, "not_found", "No such ticket.")
		return
	}
	reply(w, http.StatusCreated, c)
}

// AddComment adds a comment to a ticket; ok is false for an unknown ticket. The caller has
// checked the body.
func (a *API) AddComment(id, body string) (c Comment, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.tickets[id]
	if !ok {
		return Comment{}, false
	}
	c = Comment{ID: len(t.Comments) + 1, Body: body, CreatedAt: a.clock().UTC()}
	t.Comments = append(t.Comments, c)
	return c, true
}

func (a *API) delete(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	_, ok := a.tickets[r.PathValue("id")]
	delete(a.tickets, r.PathValue("id"))
	a.mu.Unlock()
	if !ok {
		problem(w, http.StatusNotFound, "not_found", "No such ticket.")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) reset(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Reason     string `json:"reason"`
		NotifyUser *bool  `json:"notify_user"`
	}
	if err := decode(r, &body); err != nil || strings.TrimSpace(body.Reason) == "" {
		problem(w, http.StatusBadRequest, "body_invalid", `Send {"reason": "...", "notify_user": true|false}.`)
		return
	}
	pr, ok := a.ResetPassword(r.PathValue("username"), body.Reason, body.NotifyUser != nil && *body.NotifyUser)
	if !ok {
		problem(w, http.StatusNotFound, "not_found", "No such user.")
		return
	}
	reply(w, http.StatusOK, map[string]any{
		"username": pr.Username, "status": "reset", "sessions_revoked": true,
		"notified": pr.NotifyUser, "reset_at": pr.At,
	})
}

// ResetPassword resets a known user's password, for the REST route, the gRPC method and the MCP
// tool alike; ok is false for an unknown user.
func (a *API) ResetPassword(user, reason string, notify bool) (pr PasswordReset, ok bool) {
	a.mu.Lock()
	if a.users[user] {
		pr = PasswordReset{Username: user, Reason: reason, NotifyUser: notify, At: a.clock().UTC()}
		a.resets = append(a.resets, pr)
		ok = true
	}
	a.mu.Unlock()
	if ok {
		a.log.Warn("password reset performed", "username", user, "notify_user", notify)
	}
	return pr, ok
}

// Resets returns the password resets performed so far.
func (a *API) Resets() []PasswordReset {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]PasswordReset(nil), a.resets...)
}

// Ticket returns a copy of one ticket.
func (a *API) Ticket(id string) (Ticket, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.tickets[id]
	if !ok {
		return Ticket{}, false
	}
	return copyTicket(t), true
}

func copyTicket(t *Ticket) Ticket {
	c := *t
	c.Comments = append([]Comment{}, t.Comments...)
	return c
}

// decode reads one JSON object with only known fields and nothing after it.
func decode(r *http.Request, v any) error {
	if ct := r.Header.Get("content-type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("content-type %q is not JSON", ct)
	}
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("data after the JSON object")
	}
	return nil
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("content-type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client went away; nothing to do
}

func problem(w http.ResponseWriter, status int, code, detail string) {
	w.Header().Set("content-type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{ // the client went away; nothing to do
		"type": "urn:acme:helpdesk:" + code, "title": http.StatusText(status), "status": status,
		"code": code, "detail": detail,
	})
}
