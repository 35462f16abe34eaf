package pgstore

import (
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agentauthz/agentauthz/internal/approval"
)

// pgCols are the columns, in the order pgScan reads and pgInsert writes them.
const pgCols = `id, state, agent, digest, rule, reason, method, host, path, body, content_type,
	approvers, notify, created_at, expires_at, use_within_ns, decided_at, decided_by, comment,
	use_by, used_at, hold_condition`

// pgArgs are a's columns in pgCols order.
func pgArgs(a approval.Approval) []any {
	return []any{
		a.ID, string(a.State), a.Agent, a.Digest, a.Rule, a.Reason, a.Method, a.Host, a.Path,
		a.Body, a.ContentType, pgList(a.Approvers), pgList(a.Notify), a.CreatedAt, a.ExpiresAt,
		int64(a.UseWithin), pgTime(a.DecidedAt), a.DecidedBy, a.Comment, pgTime(a.UseBy),
		pgTime(a.UsedAt), a.Condition,
	}
}

// pgScan reads a row of pgCols.
func pgScan(row pgx.Row) (approval.Approval, error) {
	var (
		a                        approval.Approval
		state                    string
		useWithin                int64
		decidedAt, useBy, usedAt *time.Time
	)
	err := row.Scan(&a.ID, &state, &a.Agent, &a.Digest, &a.Rule, &a.Reason, &a.Method, &a.Host,
		&a.Path, &a.Body, &a.ContentType, &a.Approvers, &a.Notify, &a.CreatedAt, &a.ExpiresAt,
		&useWithin, &decidedAt, &a.DecidedBy, &a.Comment, &useBy, &usedAt, &a.Condition)
	if err != nil {
		return approval.Approval{}, err
	}
	a.State, a.UseWithin = approval.State(state), time.Duration(useWithin)
	for _, t := range []struct {
		dst *time.Time
		src *time.Time
	}{{&a.DecidedAt, decidedAt}, {&a.UseBy, useBy}, {&a.UsedAt, usedAt}} {
		if t.src != nil {
			*t.dst = *t.src
		}
	}
	return a, nil
}

// pgTime stores the zero time as NULL.
func pgTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// pgList stores a missing list as an empty array.
func pgList(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}
