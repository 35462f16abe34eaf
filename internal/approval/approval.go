// Package approval holds high-impact requests until an authorised human approves that exact
// request, then lets the agent's identical retry through exactly once.
//
// An approval is bound to a digest of the agent's SPIFFE ID, the method, host, path with query,
// the canonical body and the rule that required it. Its life:
//
//	pending ──approve──▶ approved ──consume──▶ used
//	   │                    │
//	   ├──deny──▶ denied    └──use_within passes──▶ expired
//	   └──approve_within passes──▶ expired
//
// Stores keep approvals; consuming one is a single atomic step in the store, so that many
// identical retries at the same instant, across replicas sharing a store, let one through.
//
// This package is the core that the decision engine links: approvals, the Store interface, the
// Gate and the digest. It links no database, notifier or identity provider. Those live below
// it, each in its own package, and cmd chooses and wires them: the stores (memstore, boltstore,
// pgstore), notifications (notify, slack), approver sign-in (signin), the approvers' HTTP API
// (api) and web console (console).
package approval

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"strings"
	"time"
)

// State is where an approval is in its life.
type State string

// The states. Expired is derived: a pending approval past ExpiresAt, or an approved one past
// UseBy, is expired whatever the store last wrote.
const (
	Pending  State = "pending"
	Approved State = "approved"
	Denied   State = "denied"
	Expired  State = "expired"
	Used     State = "used"
)

// ValidState reports whether s names a state.
func ValidState(s State) bool {
	switch s {
	case Pending, Approved, Denied, Expired, Used:
		return true
	}
	return false
}

// Approval is one held request and what became of it.
type Approval struct {
	ID     string `json:"id"`
	State  State  `json:"state"`
	Agent  string `json:"agent"`
	Digest string `json:"digest"`
	Rule   string `json:"rule"`
	// Reason is the rule's reason for holding, shown to approvers.
	Reason string `json:"reason,omitempty"`
	// Condition is the rule's approval condition (the policy's when) that was true of the
	// request; "" when the rule holds every request. Shown to approvers.
	Condition string `json:"condition,omitempty"`
	Method    string `json:"method"`
	Host      string `json:"host"`
	Path      string `json:"path"`
	// Body is what approvers see: pretty-printed JSON with the policy's sensitive fields
	// redacted, or a description of a non-JSON body. Never the raw body.
	Body        string `json:"body,omitempty"`
	ContentType string `json:"content_type,omitempty"`
	// Approvers are who may decide: "group:NAME" or "user:NAME".
	Approvers []string `json:"approvers"`
	// Notify names the notifiers told about the request.
	Notify []string `json:"notify,omitempty"`

	CreatedAt time.Time `json:"created_at"`
	// ExpiresAt is when a pending approval lapses.
	ExpiresAt time.Time `json:"expires_at"`
	// UseWithin is how long an approved request stays usable after approval.
	UseWithin time.Duration `json:"-"`
	DecidedAt time.Time     `json:"decided_at,omitzero"`
	DecidedBy string        `json:"decided_by,omitempty"`
	Comment   string        `json:"comment,omitempty"`
	// UseBy is when an approved request lapses unused.
	UseBy  time.Time `json:"use_by,omitzero"`
	UsedAt time.Time `json:"used_at,omitzero"`
}

// Current returns a's state at now, with lapsed approvals expired.
func (a Approval) Current(now time.Time) State {
	switch {
	case a.State == Pending && !now.Before(a.ExpiresAt):
		return Expired
	case a.State == Approved && !now.Before(a.UseBy):
		return Expired
	}
	return a.State
}

// At returns a with its state as of now.
func (a Approval) At(now time.Time) Approval {
	a.State = a.Current(now)
	return a
}

// Errors stores return. Callers branch on them.
var (
	ErrNotFound   = errors.New("approval: no such approval")
	ErrMismatch   = errors.New("approval: the approval is for another agent or request")
	ErrNotPending = errors.New("approval: the approval is no longer pending")
	ErrPending    = errors.New("approval: the approval is still pending")
	ErrDenied     = errors.New("approval: the approval was denied")
	ErrUsed       = errors.New("approval: the approval was already used")
	ErrExpired    = errors.New("approval: the approval expired")
)

// Verdict is an approver's decision.
type Verdict struct {
	Approve bool
	By      string
	Comment string
}

// Store keeps approvals. Every method is safe for concurrent use, including across processes
// sharing the same backing store.
type Store interface {
	// Hold returns the live approval (pending, or approved and not yet used or expired) of the
	// same agent and digest, or stores a as a new pending approval. created says which. With
	// lim.DenialStands, the newest approval of the same agent and digest also answers when it
	// is a denial whose ExpiresAt has not passed (Approval.DenialStanding).
	//
	// A new approval must stay within lim, counted as of now in the same atomic step as the
	// store's write, whatever concurrent Holds (on any replica) do: otherwise Hold stores
	// nothing and returns a *LimitError (errors.Is ErrLimit). A live approval of the same agent
	// and digest is returned whatever lim says: an agent asking again is not asking for more.
	//
	// body, if not nil, renders a.Body (what approvers see of the request's body). A store calls
	// it at most once, and only on its way to storing a new approval, never when a live one
	// answers or a limit refuses: an agent asking again costs no rendering. With a nil body,
	// a.Body is stored as it is.
	Hold(ctx context.Context, a Approval, body func() string, lim Limits, now time.Time) (got Approval, created bool, err error)
	// Get returns one approval, as of now.
	Get(ctx context.Context, id string, now time.Time) (Approval, error)
	// List returns one page of the approvals q selects, as of now, newest first (by CreatedAt,
	// then by ID).
	List(ctx context.Context, q Query, now time.Time) (Page, error)
	// Decide approves or denies a pending approval: ErrNotFound, ErrExpired, ErrNotPending.
	Decide(ctx context.Context, id string, v Verdict, now time.Time) (Approval, error)
	// Consume marks an approved approval used, in one atomic step, if it belongs to agent and
	// digest and has not lapsed. Otherwise it changes nothing and says why: ErrNotFound,
	// ErrMismatch, ErrPending, ErrDenied, ErrUsed, ErrExpired (with the approval, when found
	// and matching, so the caller can quote it).
	Consume(ctx context.Context, id, agent, digest string, now time.Time) (Approval, error)
	// Purge deletes approvals that ended (denied, used, expired) before cutoff.
	Purge(ctx context.Context, cutoff time.Time) (int, error)
	Close() error
}

// NewID returns a fresh approval id: "apr_" and 128 random bits in lower-case base32.
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return "apr_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// ValidID reports whether s has the form of an approval id, so that nothing else reaches a
// store's query.
func ValidID(s string) bool {
	rest, ok := strings.CutPrefix(s, "apr_")
	if !ok || len(rest) != 26 {
		return false
	}
	for i := 0; i < len(rest); i++ {
		c := rest[i]
		if !('a' <= c && c <= 'z' || '2' <= c && c <= '7') {
			return false
		}
	}
	return true
}

// CheckConsume decides whether a, as stored, may be consumed now by agent for digest. Stores
// share it so that they agree on every case; the atomicity is theirs.
func (a Approval) CheckConsume(agent, digest string, now time.Time) error {
	if a.Agent != agent || a.Digest != digest {
		return ErrMismatch
	}
	switch a.Current(now) {
	case Approved:
		return nil
	case Pending:
		return ErrPending
	case Denied:
		return ErrDenied
	case Used:
		return ErrUsed
	default:
		return ErrExpired
	}
}

// CheckDecide decides whether a, as stored, may be decided now.
func (a Approval) CheckDecide(now time.Time) error {
	switch a.Current(now) {
	case Pending:
		return nil
	case Expired:
		return ErrExpired
	default:
		return ErrNotPending
	}
}

// WithVerdict is a, pending, with v recorded at now: approved (usable for UseWithin) or denied.
func (a Approval) WithVerdict(v Verdict, now time.Time) Approval {
	a.DecidedAt, a.DecidedBy, a.Comment = now, v.By, v.Comment
	if v.Approve {
		a.State = Approved
		a.UseBy = now.Add(a.UseWithin)
	} else {
		a.State = Denied
	}
	return a
}

// EndedBefore reports whether a ended (was denied, used or expired) before cutoff: what a
// store's Purge deletes.
func (a Approval) EndedBefore(cutoff time.Time) bool {
	switch a.Current(cutoff) {
	case Denied:
		return a.DecidedAt.Before(cutoff)
	case Used:
		return a.UsedAt.Before(cutoff)
	case Expired:
		return true
	}
	return false
}
