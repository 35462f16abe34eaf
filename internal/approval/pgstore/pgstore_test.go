package pgstore_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/pgstore"
	"github.com/agentauthz/agentauthz/internal/approval/storetest"
)

// TestPostgres runs against a real PostgreSQL: the one AGENTAUTHZ_TEST_POSTGRES_DSN names, or a
// private server the test starts (see storetest.StartPostgres). Each store gets its own schema.
func TestPostgres(t *testing.T) {
	srv := storetest.StartPostgres(t)
	t.Logf("PostgreSQL: private server %v", srv.Private())
	open := func(t *testing.T, dsn string) *pgstore.Store {
		t.Helper()
		p, err := pgstore.Open(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Close() })
		return p
	}

	t.Run("Conformance", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) approval.Store { return open(t, srv.FreshDSN(t)) })
	})

	// Two pools on one database are two replicas: what one holds and another approves, exactly
	// one of many identical retries, spread over both, consumes.
	t.Run("Replicas", func(t *testing.T) {
		dsn := srv.FreshDSN(t)
		r1, r2 := open(t, dsn), open(t, dsn)
		replicas := []*pgstore.Store{r1, r2}
		ctx := t.Context()
		now := time.Now().Truncate(time.Microsecond)
		a := approval.Approval{
			ID: approval.NewID(), Agent: "spiffe://example.org/a", Digest: "sha256:ab", Rule: "r",
			Method: "POST", Host: "h", Path: "/p", CreatedAt: now, ExpiresAt: now.Add(time.Hour),
			UseWithin: 5 * time.Minute,
		}
		if _, created, err := r1.Hold(ctx, a, nil, approval.Limits{}, now); err != nil || !created {
			t.Fatalf("Hold on replica 1 = created %v, %v", created, err)
		}
		// Replica 2 sees it, by id and by request.
		if got, created, err := r2.Hold(ctx, approval.Approval{ID: approval.NewID(), Agent: a.Agent, Digest: a.Digest, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}, nil, approval.Limits{}, now); err != nil || created || got.ID != a.ID {
			t.Fatalf("Hold on replica 2 = %s, created %v, %v; want %s", got.ID, created, err, a.ID)
		}
		if _, err := r2.Decide(ctx, a.ID, approval.Verdict{Approve: true, By: "user:alice"}, now.Add(time.Second)); err != nil {
			t.Fatalf("Decide on replica 2: %v", err)
		}
		const n = 50
		at := now.Add(2 * time.Second)
		errs := make([]error, n)
		var start, done sync.WaitGroup
		start.Add(1)
		for i := range n {
			done.Go(func() {
				start.Wait()
				_, errs[i] = replicas[i%2].Consume(ctx, a.ID, a.Agent, a.Digest, at)
			})
		}
		start.Done()
		done.Wait()
		ok, used := 0, 0
		for i, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, approval.ErrUsed):
				used++
			default:
				t.Errorf("Consume %d: %v", i, err)
			}
		}
		if ok != 1 || used != n-1 {
			t.Fatalf("%d Consume calls over two replicas: %d succeeded, %d ErrUsed; want 1 and %d", n, ok, used, n-1)
		}
		for _, r := range replicas {
			if got, err := r.Get(ctx, a.ID, at); err != nil || got.State != approval.Used || !got.UsedAt.Equal(at) {
				t.Fatalf("Get after consuming = %q at %v, %v", got.State, got.UsedAt, err)
			}
		}

		// Holds racing over both replicas, for a fresh request and for one whose approval just
		// lapsed: one approval each time.
		for round, when := range []time.Time{at, at.Add(2 * time.Hour)} {
			created := make([]bool, n)
			gotIDs := make([]string, n)
			herrs := make([]error, n)
			start.Add(1)
			for i := range n {
				done.Go(func() {
					start.Wait()
					h := approval.Approval{ID: approval.NewID(), Agent: a.Agent, Digest: "sha256:cd", CreatedAt: when, ExpiresAt: when.Add(time.Hour)}
					var got approval.Approval
					got, created[i], herrs[i] = replicas[i%2].Hold(ctx, h, nil, approval.Limits{}, when)
					gotIDs[i] = got.ID
				})
			}
			start.Done()
			done.Wait()
			nCreated := 0
			for i := range n {
				if herrs[i] != nil {
					t.Fatalf("round %d: Hold %d: %v", round, i, herrs[i])
				}
				if created[i] {
					nCreated++
				}
				if gotIDs[i] != gotIDs[0] {
					t.Fatalf("round %d: Holds returned %s and %s", round, gotIDs[0], gotIDs[i])
				}
			}
			if nCreated != 1 {
				t.Fatalf("round %d: %d concurrent Holds over two replicas created %d approvals; want 1", round, n, nCreated)
			}
		}
		if pending, err := r1.List(ctx, approval.Query{State: approval.Pending}, at.Add(2*time.Hour)); err != nil || len(pending.Approvals) != 1 {
			t.Fatalf("List(pending) = %d, %v; want 1", len(pending.Approvals), err)
		}
	})

	// Replicas starting together migrate once; a restart finds its data; a schema newer than
	// the build is refused.
	t.Run("Migrate", func(t *testing.T) {
		dsn := srv.FreshDSN(t)
		const n = 4
		stores := make([]*pgstore.Store, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { stores[i], errs[i] = pgstore.Open(t.Context(), dsn) })
		}
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("Open %d: %v", i, errs[i])
			}
		}
		now := time.Now()
		a := approval.Approval{ID: approval.NewID(), Agent: "a", Digest: "d", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		if _, _, err := stores[0].Hold(t.Context(), a, nil, approval.Limits{}, now); err != nil {
			t.Fatal(err)
		}
		for _, s := range stores {
			_ = s.Close()
		}
		s := open(t, dsn)
		if got, err := s.Get(t.Context(), a.ID, now); err != nil || got.State != approval.Pending {
			t.Fatalf("after reopening: %q, %v", got.State, err)
		}

		conn, err := pgx.Connect(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		var versions int
		if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM agentauthz_approval_schema`).Scan(&versions); err != nil || versions != 4 {
			t.Fatalf("schema versions recorded: %d, %v; want 4, one per migration", versions, err)
		}
		// A database at version 1 (before the indexes Hold's limits count rules and find
		// standing denials by, and the condition that held each request) is brought up to date,
		// its approvals kept.
		if _, err := conn.Exec(t.Context(), `DROP INDEX agentauthz_approvals_live_rule; DROP INDEX agentauthz_approvals_denied;
			ALTER TABLE agentauthz_approvals DROP COLUMN hold_condition;
			DELETE FROM agentauthz_approval_schema WHERE version > 1`); err != nil {
			t.Fatal(err)
		}
		s = open(t, dsn)
		var indexes int
		if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM pg_indexes WHERE indexname IN ('agentauthz_approvals_live_rule', 'agentauthz_approvals_denied')
			AND schemaname = current_schema()`).Scan(&indexes); err != nil || indexes != 2 {
			t.Fatalf("after upgrading from version 1: %d rule indexes, %v", indexes, err)
		}
		if got, err := s.Get(t.Context(), a.ID, now); err != nil || got.State != approval.Pending || got.Condition != "" {
			t.Fatalf("after upgrading from version 1: %q, condition %q, %v", got.State, got.Condition, err)
		}
		if _, err := conn.Exec(t.Context(), `INSERT INTO agentauthz_approval_schema (version) VALUES (999)`); err != nil {
			t.Fatal(err)
		}
		if s, err := pgstore.Open(t.Context(), dsn); err == nil {
			_ = s.Close()
			t.Fatal("Open on a newer schema succeeded")
		} else if !strings.Contains(err.Error(), "newer") {
			t.Fatalf("Open on a newer schema: %v", err)
		}
	})

	t.Run("Unreachable", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		if s, err := pgstore.Open(ctx, "host="+t.TempDir()+" port=1 user=nobody sslmode=disable connect_timeout=2"); err == nil {
			_ = s.Close()
			t.Fatal("Open on no server succeeded")
		}
	})
}
