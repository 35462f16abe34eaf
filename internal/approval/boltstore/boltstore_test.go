package boltstore_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/boltstore"
	"github.com/agentauthz/agentauthz/internal/approval/storetest"
)

func openBolt(t *testing.T, path string) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) approval.Store {
		return openBolt(t, filepath.Join(t.TempDir(), "approvals.db"))
	})
}

// TestRestart: a pending approval outlives the process that held it, and can then be
// approved and used once.
func TestRestart(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "approvals.db")
	now := time.Date(2031, 1, 2, 3, 4, 5, 6, time.UTC) // nanoseconds survive too
	a := approval.Approval{
		ID: approval.NewID(), Agent: "spiffe://example.org/a", Digest: "sha256:00", Rule: "r",
		Method: "POST", Host: "h", Path: "/p", Approvers: []string{"group:ops"},
		CreatedAt: now, ExpiresAt: now.Add(time.Hour), UseWithin: 5 * time.Minute,
	}

	s, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, created, err := s.Hold(ctx, a, nil, approval.Limits{}, now); err != nil || !created {
		t.Fatalf("Hold = created %v, %v", created, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("file mode %v; want 0600", mode)
	}

	s = openBolt(t, path)
	got, err := s.Get(ctx, a.ID, now.Add(time.Minute))
	if err != nil {
		t.Fatalf("Get after reopening: %v", err)
	}
	if got.State != approval.Pending || !got.CreatedAt.Equal(now) || got.UseWithin != a.UseWithin || got.Approvers[0] != "group:ops" {
		t.Fatalf("after reopening: %+v", got)
	}
	// The index survived too: the same request finds the same approval.
	if again, created, err := s.Hold(ctx, approval.Approval{ID: approval.NewID(), Agent: a.Agent, Digest: a.Digest, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}, nil, approval.Limits{}, now.Add(time.Minute)); err != nil || created || again.ID != a.ID {
		t.Fatalf("Hold after reopening = %s, created %v, %v; want %s", again.ID, created, err, a.ID)
	}
	approved, err := s.Decide(ctx, a.ID, approval.Verdict{Approve: true, By: "user:alice"}, now.Add(2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Consume(ctx, a.ID, a.Agent, a.Digest, now.Add(3*time.Minute)); err != nil {
		t.Fatalf("Consume after reopening: %v", err)
	}
	if _, err := s.Consume(ctx, a.ID, a.Agent, a.Digest, now.Add(3*time.Minute)); !errors.Is(err, approval.ErrUsed) {
		t.Fatalf("second Consume error = %v; want ErrUsed", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// And the use survives a restart: no second use after one.
	s = openBolt(t, path)
	if _, err := s.Consume(ctx, a.ID, a.Agent, a.Digest, now.Add(4*time.Minute)); !errors.Is(err, approval.ErrUsed) {
		t.Fatalf("Consume after another restart error = %v; want ErrUsed", err)
	}
	got, err = s.Get(ctx, a.ID, now.Add(4*time.Minute))
	if err != nil || !got.UseBy.Equal(approved.UseBy) || !got.UsedAt.Equal(now.Add(3*time.Minute)) {
		t.Fatalf("after another restart: %+v, %v", got, err)
	}
}

// TestSingleProcess: while one store has the file open, another cannot open it.
func TestSingleProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "approvals.db")
	openBolt(t, path)
	s, err := boltstore.Open(path)
	if err == nil {
		_ = s.Close()
		t.Fatal("a second Open of an open file succeeded")
	}
	if !strings.Contains(err.Error(), "single replica") {
		t.Errorf("error %q does not say why", err)
	}
}

func TestMissingDir(t *testing.T) {
	if _, err := boltstore.Open(filepath.Join(t.TempDir(), "no", "such", "dir", "approvals.db")); err == nil {
		t.Fatal("Open in a missing directory succeeded")
	}
}

// TestUpgradeFromFormat1: a file of format 1, which had no index of live approvals by agent
// and rule, is brought up to date when opened: its live approvals count against Limits, its
// ended ones do not.
func TestUpgradeFromFormat1(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "approvals.db")
	now := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	held := func(agent, digest string) approval.Approval {
		return approval.Approval{ID: approval.NewID(), Agent: agent, Digest: digest, Rule: "r", Method: "POST", Host: "h",
			Path: "/p", CreatedAt: now, ExpiresAt: now.Add(time.Hour), UseWithin: 5 * time.Minute}
	}
	s, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	live, ended := held("spiffe://example.org/a", "d1"), held("spiffe://example.org/a", "d2")
	for _, a := range []approval.Approval{live, ended} {
		if _, _, err := s.Hold(ctx, a, nil, approval.Limits{}, now); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Decide(ctx, ended.ID, approval.Verdict{By: "user:alice"}, now); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	// Make it a format 1 file: without the indexes, version 1.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range []string{"agents", "rules"} {
			if err := tx.DeleteBucket([]byte(b)); err != nil {
				return err
			}
		}
		return tx.Bucket([]byte("meta")).Put([]byte("version"), []byte("1"))
	})
	_ = db.Close()
	if err != nil {
		t.Fatal(err)
	}

	s = openBolt(t, path)
	lim := approval.Limits{PerAgent: 2}
	if _, created, err := s.Hold(ctx, held(live.Agent, "d3"), nil, lim, now); err != nil || !created {
		t.Fatalf("Hold beside the one live approval: created %v, %v", created, err)
	}
	if _, _, err := s.Hold(ctx, held(live.Agent, "d4"), nil, lim, now); !errors.Is(err, approval.ErrLimit) {
		t.Fatalf("Hold past the limit, counting the upgraded file's live approval: %v; want ErrLimit", err)
	}
	_ = s.Close()
	db, err = bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_ = db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket([]byte("meta")).Get([]byte("version")); string(v) != "2" {
			t.Errorf("format after upgrading: %q", v)
		}
		return nil
	})
}
