// Package pgstore is an approval.Store in PostgreSQL, which several agentauthz replicas can
// share.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/agentauthz/agentauthz/internal/approval"
)

// Store keeps approvals in a PostgreSQL database, which several agentauthz replicas can share.
//
// Each step that must happen once is settled by the database, not by the replica:
//
//   - Consume is one UPDATE that matches only an approved, unlapsed row of the given agent and
//     digest and marks it used. Row locking makes concurrent UPDATEs of the row wait for each
//     other and re-check the condition, so of any number of identical retries on any number
//     of replicas, exactly one gets the row back.
//   - Hold relies on a partial unique index on (agent, digest) over pending and approved rows:
//     at most one live approval per request, whatever the replicas race. In one transaction it
//     marks a lapsed live row expired, then INSERT ... ON CONFLICT DO NOTHING, then, if another
//     replica's row won, reads that one. With Limits, the transaction first takes advisory
//     locks on the agent and the rule (in one order, so that no two wait for each other), then
//     counts their live rows: every replica creating an approval for that agent or rule waits
//     for the lock, so the count it makes includes every row committed before it, and none can
//     pass the limit.
//   - Decide locks the row (SELECT ... FOR UPDATE) before checking and writing it.
//
// Time is the caller's: every comparison uses the now passed in, never the database's clock.
// Times are stored as timestamptz, to the microsecond. Text may not contain NUL bytes.
type Store struct {
	pool *pgxpool.Pool
}

var _ approval.Store = (*Store)(nil)

// pgLapsed is the condition of a row that is live by its state column but has lapsed at @now.
const pgLapsed = `((state = 'pending' AND expires_at <= @now) OR (state = 'approved' AND use_by <= @now))`

// Open connects to the database dsn names (a URL or keyword/value string, as pgx reads
// it, including pool_max_conns and the like) and creates or upgrades the approval tables.
// Replicas may open it at the same time. Close the store to close its connections.
func Open(ctx context.Context, dsn string) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	p := &Store{pool: pool}
	if err := p.migrate(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	return p, nil
}

// Hold implements approval.Store.
func (p *Store) Hold(ctx context.Context, a approval.Approval, body func() string, lim approval.Limits, now time.Time) (got approval.Approval, created bool, err error) {
	// An agent repeating a held request finds its approval in one read, without a transaction
	// and without rendering a body; an agent past its limits is refused the same way. The
	// transaction below settles everything else.
	x, err := pgScan(p.pool.QueryRow(ctx, `SELECT `+pgCols+` FROM agentauthz_approvals
		WHERE agent = $1 AND digest = $2 AND state IN ('pending', 'approved')`, a.Agent, a.Digest))
	switch {
	case err == nil:
		if x.Live(now) {
			return x.At(now), false, nil
		}
	case !errors.Is(err, pgx.ErrNoRows):
		return approval.Approval{}, false, fmt.Errorf("pgstore: hold: %w", err)
	}
	if lim.DenialStands {
		// The newest approval of the request, if it is a denial still standing. A denial
		// that lands while this Hold goes on is seen by the next one.
		x, err := pgScan(p.pool.QueryRow(ctx, `SELECT `+pgCols+` FROM agentauthz_approvals
			WHERE agent = $1 AND digest = $2 AND state = 'denied' AND expires_at > $3
			ORDER BY created_at DESC, id LIMIT 1`, a.Agent, a.Digest, now))
		switch {
		case err == nil:
			return x.At(now), false, nil
		case !errors.Is(err, pgx.ErrNoRows):
			return approval.Approval{}, false, fmt.Errorf("pgstore: hold: %w", err)
		}
	}
	if err := pgCheckLimits(ctx, p.pool, a, lim, now); err != nil {
		return approval.Approval{}, false, err
	}
	// Rendered before the transaction, which holds locks. If another replica holds the same
	// request meanwhile, its approval answers and this is unused.
	if body != nil {
		a.Body = body()
	}
	a.State = approval.Pending
	var limitErr error // a refusal: the transaction ends without a change
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if lim.Any() {
			if err := pgLockLimits(ctx, tx, a); err != nil {
				return err
			}
			// The same request may have been held meanwhile (by another replica): it answers,
			// whatever the limits.
			x, err := pgScan(tx.QueryRow(ctx, `SELECT `+pgCols+` FROM agentauthz_approvals
				WHERE agent = $1 AND digest = $2 AND state IN ('pending', 'approved')`, a.Agent, a.Digest))
			if err == nil && x.Live(now) {
				got = x.At(now)
				return nil
			}
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
			if err := pgCheckLimits(ctx, tx, a, lim, now); err != nil {
				if errors.Is(err, approval.ErrLimit) {
					limitErr = err
					return nil
				}
				return err
			}
		}
		// Each round settles unless another replica ends or inserts the live row between two
		// statements; a few rounds are plenty.
		for range 5 {
			// A live row lapsed by now no longer counts: mark it expired, so that it leaves
			// the unique index and the new one can take its place.
			if _, err := tx.Exec(ctx, `UPDATE agentauthz_approvals SET state = 'expired'
				WHERE agent = @agent AND digest = @digest AND `+pgLapsed,
				pgx.NamedArgs{"agent": a.Agent, "digest": a.Digest, "now": now}); err != nil {
				return err
			}
			x, err := pgScan(tx.QueryRow(ctx, `INSERT INTO agentauthz_approvals (`+pgCols+`)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)
				ON CONFLICT (agent, digest) WHERE state IN ('pending', 'approved') DO NOTHING
				RETURNING `+pgCols, pgArgs(a)...))
			if err == nil {
				got, created = x, true
				return nil
			}
			if !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
			// Another live row is in the way: in READ COMMITTED this statement sees it, once
			// its transaction has committed (the INSERT waited for that).
			x, err = pgScan(tx.QueryRow(ctx, `SELECT `+pgCols+` FROM agentauthz_approvals
				WHERE agent = $1 AND digest = $2 AND state IN ('pending', 'approved')`, a.Agent, a.Digest))
			if err == nil {
				if st := x.Current(now); st == approval.Pending || st == approval.Approved {
					got = x.At(now)
					return nil
				}
				continue // inserted lapsed (another replica's clock): expire it and retry
			}
			if !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
			// It ended in between: retry.
		}
		return errors.New("the live approval kept changing")
	})
	if err != nil {
		return approval.Approval{}, false, fmt.Errorf("pgstore: hold: %w", err)
	}
	if limitErr != nil {
		return approval.Approval{}, false, limitErr
	}
	return got, created, nil
}

// Get implements approval.Store.
func (p *Store) Get(ctx context.Context, id string, now time.Time) (approval.Approval, error) {
	a, err := p.get(ctx, id)
	if err != nil {
		return approval.Approval{}, err
	}
	return a.At(now), nil
}

func (p *Store) get(ctx context.Context, id string) (approval.Approval, error) {
	a, err := pgScan(p.pool.QueryRow(ctx, `SELECT `+pgCols+` FROM agentauthz_approvals WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return approval.Approval{}, approval.ErrNotFound
	}
	if err != nil {
		return approval.Approval{}, fmt.Errorf("pgstore: %w", err)
	}
	return a, nil
}

// List implements approval.Store: one query, which also counts every row after the cursor
// (count(*) OVER (), before the LIMIT).
func (p *Store) List(ctx context.Context, q approval.Query, now time.Time) (approval.Page, error) {
	args := pgx.NamedArgs{"state": string(q.State), "now": now, "after": !q.After.IsZero(),
		"at": q.After.CreatedAt, "id": q.After.ID, "limit": nil}
	if q.Limit > 0 {
		args["limit"] = q.Limit
	}
	rows, err := p.pool.Query(ctx, `SELECT `+pgCols+`, count(*) OVER () FROM agentauthz_approvals
		WHERE (@state = '' OR @state = CASE WHEN `+pgLapsed+` THEN 'expired' ELSE state END)
		AND (NOT @after OR created_at < @at OR (created_at = @at AND id > @id))
		ORDER BY created_at DESC, id
		LIMIT @limit`, args)
	if err != nil {
		return approval.Page{}, fmt.Errorf("pgstore: %w", err)
	}
	defer rows.Close()
	var page approval.Page
	total := 0
	for rows.Next() {
		a, err := pgScan(countedRow{rows, &total})
		if err != nil {
			return approval.Page{}, fmt.Errorf("pgstore: %w", err)
		}
		page.Approvals = append(page.Approvals, a.At(now))
	}
	if err := rows.Err(); err != nil {
		return approval.Page{}, fmt.Errorf("pgstore: %w", err)
	}
	if n := len(page.Approvals); total > n {
		page.More, page.Next = total-n, approval.CursorOf(page.Approvals[n-1])
	}
	return page, nil
}

// countedRow is a row of pgCols and a count, which Scan reads into n.
type countedRow struct {
	pgx.Rows
	n *int
}

func (r countedRow) Scan(dest ...any) error { return r.Rows.Scan(append(dest, r.n)...) }

// Decide implements approval.Store.
func (p *Store) Decide(ctx context.Context, id string, v approval.Verdict, now time.Time) (approval.Approval, error) {
	var got approval.Approval
	var verdictErr error // a refusal: the transaction ends without a change
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		a, err := pgScan(tx.QueryRow(ctx, `SELECT `+pgCols+` FROM agentauthz_approvals WHERE id = $1 FOR UPDATE`, id))
		if errors.Is(err, pgx.ErrNoRows) {
			verdictErr = approval.ErrNotFound
			return nil
		}
		if err != nil {
			return err
		}
		if err := a.CheckDecide(now); err != nil {
			got, verdictErr = a.At(now), err
			return nil
		}
		a = a.WithVerdict(v, now)
		got, err = pgScan(tx.QueryRow(ctx, `UPDATE agentauthz_approvals
			SET state = $2, decided_at = $3, decided_by = $4, comment = $5, use_by = $6
			WHERE id = $1 RETURNING `+pgCols,
			a.ID, string(a.State), pgTime(a.DecidedAt), a.DecidedBy, a.Comment, pgTime(a.UseBy)))
		return err
	})
	if err != nil {
		return approval.Approval{}, fmt.Errorf("pgstore: decide: %w", err)
	}
	return got, verdictErr
}

// Consume implements approval.Store.
func (p *Store) Consume(ctx context.Context, id, agent, digest string, now time.Time) (approval.Approval, error) {
	for range 3 {
		a, err := pgScan(p.pool.QueryRow(ctx, `UPDATE agentauthz_approvals SET state = 'used', used_at = $4
			WHERE id = $1 AND agent = $2 AND digest = $3 AND state = 'approved' AND use_by > $4
			RETURNING `+pgCols, id, agent, digest, now))
		if err == nil {
			return a, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return approval.Approval{}, fmt.Errorf("pgstore: consume: %w", err)
		}
		// Nothing changed: say why.
		a, err = p.get(ctx, id)
		if err != nil {
			return approval.Approval{}, err
		}
		switch err := a.CheckConsume(agent, digest, now); err {
		case nil:
			// Approved between the two statements: try again.
		case approval.ErrMismatch:
			return approval.Approval{}, err // reveal nothing of another agent's approval
		default:
			return a.At(now), err
		}
	}
	return approval.Approval{}, errors.New("pgstore: consume: the approval kept changing")
}

// Purge implements approval.Store: the same approvals as Approval.EndedBefore(cutoff) picks
// out, including rows that Hold marked expired, which ended when they lapsed.
func (p *Store) Purge(ctx context.Context, cutoff time.Time) (int, error) {
	tag, err := p.pool.Exec(ctx, `DELETE FROM agentauthz_approvals WHERE
		   (state = 'denied' AND decided_at < $1)
		OR (state = 'used' AND used_at < $1)
		OR (state = 'pending' AND expires_at <= $1)
		OR (state = 'approved' AND use_by <= $1)
		OR (state = 'expired' AND coalesce(use_by, expires_at) <= $1)`, cutoff)
	if err != nil {
		return 0, fmt.Errorf("pgstore: purge: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// Close implements approval.Store: it closes the connections.
func (p *Store) Close() error {
	p.pool.Close()
	return nil
}
