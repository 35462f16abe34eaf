// Package api is the approvers' JSON API on the HTTP listener, and the one path every way of
// deciding a held request takes (the API, the web console, Slack's buttons).
package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/throttle"
)

// ErrUnauthenticated means the request carries no credential an Authenticator accepts.
var ErrUnauthenticated = errors.New("approval: not authenticated")

// Authenticator establishes who calls the approval API and the console: signin.Tokens,
// signin.OIDC, or a signin.Chain of them.
type Authenticator interface {
	Authenticate(r *http.Request) (approval.Approver, error)
}

// API is the approvers' JSON API on the HTTP listener:
//
//	GET  /v1/approvals?state=pending|approved|denied|expired|used&limit=N&cursor=C
//	GET  /v1/approvals/{id}
//	POST /v1/approvals/{id}/approve   {"comment": "..."}
//	POST /v1/approvals/{id}/deny      {"comment": "..."}
//
// A listing is paged, newest first: limit approvals (DefaultLimit, at most MaxLimit), with
// "more", how many follow, and "next_cursor", the cursor of the next page.
//
// Every call is authenticated. Only an approver the held route names may decide, and never the
// agent whose request it is. Approvals are answered as approvers are shown them
// (approval.Approval.Visible): characters that do not show as themselves, such as bidi
// overrides and zero-width spaces in what the agent sent, are \u{XXXX} markers.
type API struct {
	Store approval.Store
	Auth  Authenticator
	// Clock is injected for tests; nil means time.Now.
	Clock  func() time.Time
	Events approval.EventLog
	Log    *slog.Logger
	// Decided is told about each decision (to update notifications); may be nil.
	Decided func(approval.Approval)
	// Throttle logs and counts failed sign-ins per client address, and refuses an address's
	// sign-ins (429, Retry-After) while it has failed too often: on the API, the console and
	// Slack's buttons. Nil throttles, logs and counts nothing.
	Throttle *throttle.Limiter
}

// Register adds the API's routes to mux.
func (api *API) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/approvals", api.list)
	mux.HandleFunc("GET /v1/approvals/{id}", api.get)
	mux.HandleFunc("POST /v1/approvals/{id}/approve", func(w http.ResponseWriter, r *http.Request) { api.decide(w, r, true) })
	mux.HandleFunc("POST /v1/approvals/{id}/deny", func(w http.ResponseWriter, r *http.Request) { api.decide(w, r, false) })
}

// Now is the API's time: its Clock, or time.Now.
func (api *API) Now() time.Time {
	if api.Clock != nil {
		return api.Clock()
	}
	return time.Now()
}

// WriteProblem writes an RFC 9457 error.
func WriteProblem(w http.ResponseWriter, status int, code, detail string) {
	w.Header().Set("content-type", "application/problem+json")
	w.Header().Set("cache-control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{ // the client went away; nothing to do
		"type": "urn:agentauthz:problem:" + code, "title": http.StatusText(status), "status": status,
		"code": code, "detail": detail,
	})
}

// WriteJSON writes v as the JSON answer.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("content-type", "application/json")
	w.Header().Set("cache-control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client went away; nothing to do
}

// Authenticate answers 401 (403 for a workload, 429 while the client's address is throttled,
// 503 if sign-in fails) itself and returns false unless the caller is a signed-in approver: the
// sign-in of every route of the API, for routes beside it (the decision log's head).
func (api *API) Authenticate(w http.ResponseWriter, r *http.Request) bool {
	_, ok := api.authenticate(w, r)
	return ok
}

// authenticate answers 401 itself and returns false when the caller is not an approver. A
// credential that is refused is a failed sign-in, throttled by the caller's address.
func (api *API) authenticate(w http.ResponseWriter, r *http.Request) (approval.Approver, bool) {
	att, wait := api.Throttle.Begin(r, "api")
	if att == nil {
		WriteThrottled(w, wait)
		return approval.Approver{}, false
	}
	p, err := api.Auth.Authenticate(r)
	switch {
	case errors.Is(err, ErrUnauthenticated):
		if len(r.Header.Values("Authorization")) == 0 {
			att.Release() // no credential: nothing was guessed
		} else {
			att.Fail(err.Error(), "path", r.URL.Path)
		}
		w.Header().Set("www-authenticate", `Bearer realm="agentauthz approvals"`)
		WriteProblem(w, http.StatusUnauthorized, "unauthenticated", "Sign in as an approver: send Authorization: Bearer <token>.")
		return approval.Approver{}, false
	case err != nil:
		att.Release()
		WriteProblem(w, http.StatusServiceUnavailable, "internal_error", "Authentication is unavailable; retry later.")
		return approval.Approver{}, false
	case approval.IsWorkload(p.Name):
		att.Release()
		WriteProblem(w, http.StatusForbidden, "forbidden", "Workload identities cannot use the approval API.")
		return approval.Approver{}, false
	}
	att.Release()
	return p, true
}

// WriteThrottled answers 429 with Retry-After: the client's address has failed to sign in too
// often (throttle.Limiter), and its sign-ins are not looked at until then.
func WriteThrottled(w http.ResponseWriter, wait time.Duration) {
	secs := throttle.RetryAfter(wait)
	w.Header().Set("retry-after", strconv.Itoa(secs))
	WriteProblem(w, http.StatusTooManyRequests, "throttled",
		"Too many failed sign-ins from your address; retry in "+strconv.Itoa(secs)+" seconds.")
}

func (api *API) list(w http.ResponseWriter, r *http.Request) {
	if _, ok := api.authenticate(w, r); !ok {
		return
	}
	q, ok := ListQuery(w, r, "")
	if !ok {
		return
	}
	page, err := api.Store.List(r.Context(), q, api.Now())
	if err != nil {
		api.StoreFailed(w, err)
		return
	}
	shown := make([]approval.Approval, len(page.Approvals))
	for i, a := range page.Approvals {
		shown[i] = a.Visible()
	}
	WriteJSON(w, http.StatusOK, PageJSON(page, shown))
}

// Pages of a listing: DefaultLimit approvals, unless the caller asks for up to MaxLimit.
const (
	DefaultLimit = 50
	MaxLimit     = 500
)

// ListQuery reads a listing's query parameters: state (defaultState when absent; "" lists all),
// limit (1 to MaxLimit, DefaultLimit when absent) and cursor (a page's next_cursor). It answers
// 400 itself and returns false when one is bad or given twice.
func ListQuery(w http.ResponseWriter, r *http.Request, defaultState approval.State) (approval.Query, bool) {
	params := r.URL.Query()
	for _, k := range []string{"state", "limit", "cursor"} {
		if len(params[k]) > 1 {
			WriteProblem(w, http.StatusBadRequest, "bad_query", "Send "+k+" once.")
			return approval.Query{}, false
		}
	}
	q := approval.Query{State: defaultState, Limit: DefaultLimit}
	if params.Has("state") {
		q.State = approval.State(params.Get("state"))
	}
	if q.State != "" && !approval.ValidState(q.State) {
		WriteProblem(w, http.StatusBadRequest, "bad_state", "state must be pending, approved, denied, expired or used.")
		return approval.Query{}, false
	}
	if s := params.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxLimit || strconv.Itoa(n) != s {
			WriteProblem(w, http.StatusBadRequest, "bad_limit", "limit must be a number from 1 to "+strconv.Itoa(MaxLimit)+".")
			return approval.Query{}, false
		}
		q.Limit = n
	}
	c, err := approval.ParseCursor(params.Get("cursor"))
	if err != nil {
		WriteProblem(w, http.StatusBadRequest, "bad_cursor", "cursor must be a next_cursor a listing answered.")
		return approval.Query{}, false
	}
	q.After = c
	return q, true
}

// PageJSON is the answer to a listing: shown (page's approvals as the caller shows them),
// "more" (how many follow) and, if any do, "next_cursor".
func PageJSON[T any](page approval.Page, shown []T) map[string]any {
	m := map[string]any{"approvals": shown, "more": page.More}
	if !page.Next.IsZero() {
		m["next_cursor"] = page.Next.String()
	}
	return m
}

func (api *API) get(w http.ResponseWriter, r *http.Request) {
	if _, ok := api.authenticate(w, r); !ok {
		return
	}
	id := r.PathValue("id")
	if !approval.ValidID(id) {
		WriteProblem(w, http.StatusNotFound, "not_found", "No such approval.")
		return
	}
	a, err := api.Store.Get(r.Context(), id, api.Now())
	if errors.Is(err, approval.ErrNotFound) {
		WriteProblem(w, http.StatusNotFound, "not_found", "No such approval.")
		return
	}
	if err != nil {
		api.StoreFailed(w, err)
		return
	}
	WriteJSON(w, http.StatusOK, a.Visible())
}

// maxComment bounds an approver's comment.
const maxComment = 2000

func (api *API) decide(w http.ResponseWriter, r *http.Request, approve bool) {
	p, ok := api.authenticate(w, r)
	if !ok {
		return
	}
	var body struct {
		Comment string `json:"comment"`
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, 16<<10))
	if err == nil && len(strings.TrimSpace(string(data))) > 0 {
		dec := json.NewDecoder(strings.NewReader(string(data)))
		dec.DisallowUnknownFields()
		if err = dec.Decode(&body); err == nil && dec.More() {
			err = errors.New("data after the JSON object")
		}
	}
	if err != nil || len(body.Comment) > maxComment {
		WriteProblem(w, http.StatusBadRequest, "bad_request", `Send {"comment": "..."} (at most 2000 bytes), or no body.`)
		return
	}
	a, refused := api.DecideAs(r.Context(), p, r.PathValue("id"), approve, body.Comment)
	if refused != nil {
		WriteProblem(w, refused.Status, refused.Code, refused.Detail)
		return
	}
	WriteJSON(w, http.StatusOK, a.Visible())
}

// Refusal is a decision that was not made: the problem to answer.
type Refusal struct {
	Status       int
	Code, Detail string
}

// MayDecide says why p may not decide a, or "" when p may: only a person among the approvers
// the held route names, and never the agent whose request it is.
func MayDecide(p approval.Approver, a approval.Approval) string {
	switch {
	case p.Name == "" || approval.IsWorkload(p.Name):
		return "workload identities cannot decide"
	case p.Name == a.Agent:
		return "it is your own request"
	case !p.May(a.Approvers):
		return "you are not one of its approvers (" + strings.Join(a.Approvers, ", ") + ")"
	}
	return ""
}

// DecideAs records p's verdict on approval id: the one path every way of deciding takes (the
// API, the console, Slack's buttons). It checks MayDecide, decides in the store, writes the
// audit event (with attrs added, e.g. via=console) and tells the Decided hook.
func (api *API) DecideAs(ctx context.Context, p approval.Approver, id string, approve bool, comment string, attrs ...slog.Attr) (approval.Approval, *Refusal) {
	if !approval.ValidID(id) {
		return approval.Approval{}, &Refusal{http.StatusNotFound, "not_found", "No such approval."}
	}
	if len(comment) > maxComment {
		return approval.Approval{}, &Refusal{http.StatusBadRequest, "bad_request", "The comment is longer than 2000 bytes."}
	}
	now := api.Now()
	a, err := api.Store.Get(ctx, id, now)
	if errors.Is(err, approval.ErrNotFound) {
		return approval.Approval{}, &Refusal{http.StatusNotFound, "not_found", "No such approval."}
	}
	if err != nil {
		return approval.Approval{}, api.storeRefusal(err)
	}
	if MayDecide(p, a) != "" {
		return approval.Approval{}, &Refusal{http.StatusForbidden, "forbidden", "You are not one of this request's approvers (" + strings.Join(a.Approvers, ", ") + ")."}
	}
	a, err = api.Store.Decide(ctx, id, approval.Verdict{Approve: approve, By: p.Name, Comment: comment}, now)
	switch {
	case errors.Is(err, approval.ErrExpired):
		return approval.Approval{}, &Refusal{http.StatusGone, "expired", "This request expired before it was decided."}
	case errors.Is(err, approval.ErrNotPending):
		return approval.Approval{}, &Refusal{http.StatusConflict, "not_pending", "This request was already decided."}
	case err != nil:
		return approval.Approval{}, api.storeRefusal(err)
	}
	kind := "approval.denied"
	if approve {
		kind = "approval.approved"
	}
	if api.Events != nil {
		base := []slog.Attr{slog.String("approval_id", a.ID), slog.String("agent", a.Agent),
			slog.String("rule", a.Rule), slog.String("by", p.Name), slog.String("comment", a.Comment),
			slog.String("digest", a.Digest)}
		if err := api.Events.Write(kind, append(base, attrs...)...); err != nil && api.Log != nil {
			api.Log.Error("approval event not recorded", "kind", kind, "approval_id", a.ID, "error", err.Error())
		}
	}
	if api.Decided != nil {
		api.Decided(a)
	}
	return a, nil
}

func (api *API) storeRefusal(err error) *Refusal {
	if api.Log != nil {
		api.Log.Error("approval store failed", "error", err.Error())
	}
	return &Refusal{http.StatusServiceUnavailable, "internal_error", "The approval store is unavailable; retry later."}
}

// StoreFailed logs a store's failure and answers 503.
func (api *API) StoreFailed(w http.ResponseWriter, err error) {
	if api.Log != nil {
		api.Log.Error("approval store failed", "error", err.Error())
	}
	WriteProblem(w, http.StatusServiceUnavailable, "internal_error", "The approval store is unavailable; retry later.")
}
