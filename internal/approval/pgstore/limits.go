package pgstore

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agentauthz/agentauthz/internal/approval"
)

// querier is a pool or a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// pgCheckLimits counts the live rows of a's agent and of its rule as of now, and says whether
// a new one stays within lim (a *approval.LimitError if not).
func pgCheckLimits(ctx context.Context, q querier, a approval.Approval, lim approval.Limits, now time.Time) error {
	if !lim.Any() {
		return nil
	}
	var agents, rules int
	err := q.QueryRow(ctx, `SELECT count(*) FILTER (WHERE agent = @agent), count(*) FILTER (WHERE rule = @rule)
		FROM agentauthz_approvals
		WHERE (agent = @agent OR rule = @rule) AND state IN ('pending', 'approved') AND NOT `+pgLapsed,
		pgx.NamedArgs{"agent": a.Agent, "rule": a.Rule, "now": now}).Scan(&agents, &rules)
	if err != nil {
		return fmt.Errorf("pgstore: hold: counting live approvals: %w", err)
	}
	return lim.Check(agents, rules)
}

// pgLockLimits takes the transaction's advisory locks on a's agent and rule, in the order of
// their keys, so that two transactions never wait for each other's.
func pgLockLimits(ctx context.Context, tx pgx.Tx, a approval.Approval) error {
	keys := []int64{pgLockKey("agent", a.Agent), pgLockKey("rule", a.Rule)}
	slices.Sort(keys)
	for _, k := range slices.Compact(keys) {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, k); err != nil {
			return err
		}
	}
	return nil
}

// pgLockKey is the advisory lock key of an agent's or a rule's live approvals: 64 bits of
// SHA-256, apart from pgMigrateLock's.
func pgLockKey(kind, name string) int64 {
	h := sha256.Sum256([]byte("agentauthz approval limit\x00" + kind + "\x00" + name))
	return int64(binary.BigEndian.Uint64(h[:8]))
}
