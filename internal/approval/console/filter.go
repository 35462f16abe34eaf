package console

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/api"
)

// filter is what the console's history narrows a listing to, beyond the store's state: every
// state but pending (decided), an agent, a rule, and when the request was held. The store lists
// by state only; the console reads its pages, newest first, and keeps what matches.
type filter struct {
	decided, all bool
	agent, rule  string
	from, to     time.Time
	// storeQuery is the request with the console's own parameters taken out, for api.ListQuery.
	storeQuery *http.Request
}

// maxScanned bounds the approvals one filtered page reads from the store: a filter that matches
// little answers with what it found so far and a cursor to read on from.
const maxScanned = 5000

// readFilter reads the console's filters, answering 400 itself when one is bad or repeated.
func readFilter(w http.ResponseWriter, r *http.Request) (filter, bool) {
	params := r.URL.Query()
	f := filter{}
	for _, k := range []string{"agent", "rule", "from", "to"} {
		if len(params[k]) > 1 {
			api.WriteProblem(w, http.StatusBadRequest, "bad_query", "Send "+k+" once.")
			return filter{}, false
		}
	}
	switch params.Get("state") {
	case "decided":
		f.decided = true
		params.Set("state", "")
	case "all":
		f.all = true
		params.Set("state", "")
	}
	f.agent, f.rule = params.Get("agent"), params.Get("rule")
	for _, t := range []struct {
		key string
		dst *time.Time
	}{{"from", &f.from}, {"to", &f.to}} {
		s := params.Get(t.key)
		if s == "" {
			continue
		}
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			api.WriteProblem(w, http.StatusBadRequest, "bad_time", t.key+" must be a time in RFC 3339 form, e.g. 2026-08-03T09:00:00Z.")
			return filter{}, false
		}
		*t.dst = v
	}
	if !f.from.IsZero() && !f.to.IsZero() && f.to.Before(f.from) {
		api.WriteProblem(w, http.StatusBadRequest, "bad_time", "to is before from.")
		return filter{}, false
	}
	for _, k := range []string{"agent", "rule", "from", "to"} {
		params.Del(k)
	}
	sq := r.Clone(r.Context())
	sq.URL = &url.URL{Path: r.URL.Path, RawQuery: params.Encode()}
	f.storeQuery = sq
	return f, true
}

// filters reports whether f narrows the store's listing.
func (f filter) filters() bool {
	return f.decided || f.agent != "" || f.rule != "" || !f.from.IsZero() || !f.to.IsZero()
}

func (f filter) match(a approval.Approval) bool {
	switch {
	case f.decided && a.State == approval.Pending,
		f.agent != "" && a.Agent != f.agent,
		f.rule != "" && a.Rule != f.rule,
		!f.to.IsZero() && a.CreatedAt.After(f.to):
		return false
	}
	return true
}

// list reads the store's listing of q from q.After on and keeps the approvals f matches, up to
// q.Limit. Its More is 1 when more may match (Next reads on), 0 when none can.
func (f filter) list(ctx context.Context, store approval.Store, q approval.Query, now time.Time) (approval.Page, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = api.MaxLimit
	}
	var out []approval.Approval
	var last approval.Approval
	scanned := 0
	read := approval.Query{State: q.State, After: q.After, Limit: min(api.MaxLimit, maxScanned)}
	for {
		page, err := store.List(ctx, read, now)
		if err != nil {
			return approval.Page{}, err
		}
		for i, a := range page.Approvals {
			if !f.from.IsZero() && a.CreatedAt.Before(f.from) {
				return approval.Page{Approvals: out}, nil // newest first: none older can match
			}
			if f.match(a) {
				if len(out) == limit {
					return approval.Page{Approvals: out, More: 1, Next: approval.CursorOf(last)}, nil
				}
				out = append(out, a)
			}
			last = a
			if scanned++; scanned >= maxScanned && (i < len(page.Approvals)-1 || page.More > 0) {
				return approval.Page{Approvals: out, More: 1, Next: approval.CursorOf(last)}, nil
			}
		}
		if page.More == 0 {
			return approval.Page{Approvals: out}, nil
		}
		read.After = page.Next
	}
}
