// Package boltstore is the embedded approval.Store: one bbolt file, so that approvals survive a
// restart of the one replica that uses it.
package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/agentauthz/agentauthz/internal/approval"
)

// Store is the embedded store: one bbolt file, by default under the server's --data-dir, so that
// approvals survive a restart.
//
// It serves ONE replica. Hold, Decide and Consume each run in a single bbolt write
// transaction, and bbolt runs one write transaction at a time, so they are atomic among the
// goroutines of the process that opened the file: Hold counts the live approvals of the agent
// and the rule and stores the new one in the same transaction, so its Limits hold whatever
// runs beside it. bbolt also locks the file (flock) while it is
// open, so a second process, such as a second replica on a shared volume, cannot open it:
// Open fails after a short wait instead of sharing it. Several replicas need PostgreSQL
// (pgstore).
type Store struct {
	db *bolt.DB
}

var _ approval.Store = (*Store)(nil)

// The buckets. approvals maps an id to its record (JSON, boltRecord); live maps an agent and
// digest (liveKey) to the id of the newest approval held for them, the only one that can be
// live, so that Hold finds it without a scan; agents and rules index the approvals that may
// be live (stored pending or approved) by agent and by rule (indexKey), so that Hold counts
// them against its Limits without a scan: Decide, Consume, Purge and Hold itself take out
// those that ended; meta holds the format version.
var (
	boltApprovals = []byte("approvals")
	boltLive      = []byte("live")
	boltAgents    = []byte("agents")
	boltRules     = []byte("rules")
	boltMeta      = []byte("meta")
	boltVersion   = []byte("version")
)

// boltFormat is the version of the file's layout and records; Open refuses others, and brings
// a file of an earlier version up to it. Version 2 added the agents and rules indexes.
const boltFormat = "2"

// boltLockTimeout is how long Open waits for another holder of the file to let go.
const boltLockTimeout = time.Second

// Open opens the bbolt file at path, creating it (mode 0600) if missing. The directory must
// exist. Close the store to release the file.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: boltLockTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("boltstore: %s is in use by another process: the bolt store serves a single replica (use PostgreSQL to run several): %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(boltMeta)
		if err != nil {
			return err
		}
		v := meta.Get(boltVersion)
		if v != nil && string(v) != "1" && string(v) != boltFormat {
			return fmt.Errorf("format version %q, this build reads %q", v, boltFormat)
		}
		for _, name := range [][]byte{boltApprovals, boltLive, boltAgents, boltRules} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		if string(v) == "1" {
			if err := boltIndexAll(tx); err != nil {
				return fmt.Errorf("upgrading from format 1: %w", err)
			}
		}
		return meta.Put(boltVersion, []byte(boltFormat))
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Path returns the file's path.
func (b *Store) Path() string { return b.db.Path() }

// Hold implements approval.Store.
func (b *Store) Hold(ctx context.Context, a approval.Approval, body func() string, lim approval.Limits, now time.Time) (got approval.Approval, created bool, err error) {
	if err := ctx.Err(); err != nil {
		return approval.Approval{}, false, err
	}
	// An agent repeating a held request finds its approval in a read transaction, without the
	// write (and fsync) that creating one costs; so is an agent past its limits refused. The
	// write transaction below checks both again.
	err = b.db.View(func(tx *bolt.Tx) error {
		if id := tx.Bucket(boltLive).Get(liveKey(a.Agent, a.Digest)); id != nil {
			x, ok, err := boltGet(tx.Bucket(boltApprovals), id)
			if err != nil {
				return err
			}
			if ok && (x.Live(now) || lim.DenialStands && x.DenialStanding(now)) {
				got = x.At(now)
				return nil
			}
		}
		return boltCheckLimits(tx, a, lim, now, false)
	})
	if err != nil {
		return approval.Approval{}, false, err
	}
	if got.ID != "" {
		return got, false, nil
	}
	// Rendered outside the write transaction, which bbolt runs one at a time. If another
	// goroutine holds the same request meanwhile, its approval answers and this is unused.
	if body != nil {
		a.Body = body()
	}
	err = b.db.Update(func(tx *bolt.Tx) error {
		recs, live := tx.Bucket(boltApprovals), tx.Bucket(boltLive)
		key := liveKey(a.Agent, a.Digest)
		if id := live.Get(key); id != nil {
			x, ok, err := boltGet(recs, id)
			if err != nil {
				return err
			}
			if ok && (x.Live(now) || lim.DenialStands && x.DenialStanding(now)) {
				got = x.At(now)
				return nil
			}
		}
		if err := boltCheckLimits(tx, a, lim, now, true); err != nil {
			return err
		}
		if recs.Get([]byte(a.ID)) != nil {
			return fmt.Errorf("boltstore: id %s is already taken", a.ID)
		}
		a.State = approval.Pending
		if err := boltPut(recs, a); err != nil {
			return err
		}
		if err := boltIndex(tx, a); err != nil {
			return err
		}
		got, created = a, true
		return live.Put(key, []byte(a.ID))
	})
	if err != nil {
		return approval.Approval{}, false, err
	}
	return got, created, nil
}

// Get implements approval.Store.
func (b *Store) Get(ctx context.Context, id string, now time.Time) (approval.Approval, error) {
	if err := ctx.Err(); err != nil {
		return approval.Approval{}, err
	}
	var a approval.Approval
	err := b.db.View(func(tx *bolt.Tx) error {
		x, ok, err := boltGet(tx.Bucket(boltApprovals), []byte(id))
		if err != nil {
			return err
		}
		if !ok {
			return approval.ErrNotFound
		}
		a = x.At(now)
		return nil
	})
	return a, err
}

// List implements approval.Store. It reads every record: the store holds one replica's
// approvals, which Purge keeps few and Limits keep from growing fast.
func (b *Store) List(ctx context.Context, q approval.Query, now time.Time) (approval.Page, error) {
	if err := ctx.Err(); err != nil {
		return approval.Page{}, err
	}
	var out []approval.Approval
	err := b.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(boltApprovals).ForEach(func(_, v []byte) error {
			a, err := boltDecode(v)
			if err != nil {
				return err
			}
			if a = a.At(now); (q.State == "" || a.State == q.State) && q.After.Before(a) {
				out = append(out, a)
			}
			return nil
		})
	})
	if err != nil {
		return approval.Page{}, err
	}
	slices.SortFunc(out, approval.ListOrder)
	return approval.Paginate(out, approval.Query{Limit: q.Limit}), nil
}

// Decide implements approval.Store.
func (b *Store) Decide(ctx context.Context, id string, v approval.Verdict, now time.Time) (approval.Approval, error) {
	if err := ctx.Err(); err != nil {
		return approval.Approval{}, err
	}
	var got approval.Approval
	err := b.db.Update(func(tx *bolt.Tx) error {
		recs := tx.Bucket(boltApprovals)
		a, ok, err := boltGet(recs, []byte(id))
		if err != nil {
			return err
		}
		if !ok {
			return approval.ErrNotFound
		}
		if err := a.CheckDecide(now); err != nil {
			got = a.At(now)
			return err
		}
		got = a.WithVerdict(v, now)
		if got.State == approval.Denied {
			if err := boltUnindex(tx, got); err != nil {
				return err
			}
		}
		return boltPut(recs, got)
	})
	return got, err
}

// Consume implements approval.Store.
func (b *Store) Consume(ctx context.Context, id, agent, digest string, now time.Time) (approval.Approval, error) {
	if err := ctx.Err(); err != nil {
		return approval.Approval{}, err
	}
	var got approval.Approval
	err := b.db.Update(func(tx *bolt.Tx) error {
		recs := tx.Bucket(boltApprovals)
		a, ok, err := boltGet(recs, []byte(id))
		if err != nil {
			return err
		}
		if !ok {
			return approval.ErrNotFound
		}
		if err := a.CheckConsume(agent, digest, now); err != nil {
			if err != approval.ErrMismatch { // reveal nothing of another agent's approval
				got = a.At(now)
			}
			return err
		}
		a.State, a.UsedAt = approval.Used, now
		got = a
		if err := boltUnindex(tx, a); err != nil {
			return err
		}
		return boltPut(recs, a)
	})
	return got, err
}

// Purge implements approval.Store.
func (b *Store) Purge(ctx context.Context, cutoff time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	n := 0
	err := b.db.Update(func(tx *bolt.Tx) error {
		recs, live := tx.Bucket(boltApprovals), tx.Bucket(boltLive)
		var gone []approval.Approval
		err := recs.ForEach(func(_, v []byte) error {
			a, err := boltDecode(v)
			if err != nil {
				return err
			}
			if a.EndedBefore(cutoff) {
				gone = append(gone, a)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, a := range gone {
			if err := recs.Delete([]byte(a.ID)); err != nil {
				return err
			}
			if err := boltUnindex(tx, a); err != nil {
				return err
			}
			key := liveKey(a.Agent, a.Digest)
			if bytes.Equal(live.Get(key), []byte(a.ID)) {
				if err := live.Delete(key); err != nil {
					return err
				}
			}
		}
		n = len(gone)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Close implements approval.Store: it releases the file.
func (b *Store) Close() error { return b.db.Close() }

// liveKey is the live bucket's key for an agent and digest: the agent's length, the agent, the
// digest, so that no two pairs share a key.
func liveKey(agent, digest string) []byte {
	k := binary.AppendUvarint(nil, uint64(len(agent)))
	k = append(k, agent...)
	return append(k, digest...)
}

// indexKey is the agents or rules bucket's key of an approval: the agent's (or rule's) length,
// the agent (or rule), the id. The prefix before the id lists one agent's (or rule's)
// approvals.
func indexKey(name, id string) []byte { return liveKey(name, id) }

// boltIndex adds a, stored pending, to the agents and rules indexes.
func boltIndex(tx *bolt.Tx, a approval.Approval) error {
	if err := tx.Bucket(boltAgents).Put(indexKey(a.Agent, a.ID), nil); err != nil {
		return err
	}
	return tx.Bucket(boltRules).Put(indexKey(a.Rule, a.ID), nil)
}

// boltUnindex takes a, which ended, out of the agents and rules indexes.
func boltUnindex(tx *bolt.Tx, a approval.Approval) error {
	if err := tx.Bucket(boltAgents).Delete(indexKey(a.Agent, a.ID)); err != nil {
		return err
	}
	return tx.Bucket(boltRules).Delete(indexKey(a.Rule, a.ID))
}

// boltIndexAll builds the agents and rules indexes from the records: the upgrade from format 1.
func boltIndexAll(tx *bolt.Tx) error {
	return tx.Bucket(boltApprovals).ForEach(func(_, v []byte) error {
		a, err := boltDecode(v)
		if err != nil || (a.State != approval.Pending && a.State != approval.Approved) {
			return err
		}
		return boltIndex(tx, a)
	})
}

// boltCheckLimits counts the live approvals of a's agent and of its rule as of now and says
// whether a new one stays within lim. In a write transaction (prune) it takes out of the
// indexes the approvals that have ended, lapsed ones included, so that they are not read again.
func boltCheckLimits(tx *bolt.Tx, a approval.Approval, lim approval.Limits, now time.Time, prune bool) error {
	if !lim.Any() {
		return nil
	}
	recs := tx.Bucket(boltApprovals)
	count := func(bucket []byte, name string, max int) (int, error) {
		if max <= 0 {
			return 0, nil
		}
		idx := tx.Bucket(bucket)
		prefix := indexKey(name, "")
		var ended [][]byte
		n := 0
		c := idx.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			x, ok, err := boltGet(recs, k[len(prefix):])
			if err != nil {
				return 0, err
			}
			if ok && x.Live(now) {
				n++
			} else {
				ended = append(ended, bytes.Clone(k))
			}
		}
		if prune {
			for _, k := range ended {
				if err := idx.Delete(k); err != nil {
					return 0, err
				}
			}
		}
		return n, nil
	}
	agents, err := count(boltAgents, a.Agent, lim.PerAgent)
	if err != nil {
		return err
	}
	rules, err := count(boltRules, a.Rule, lim.PerRule)
	if err != nil {
		return err
	}
	return lim.Check(agents, rules)
}

// boltRecord is an approval as the file keeps it. It has its own field names, apart from
// approval.Approval's JSON form, which is the API's and may change; times keep nanoseconds and
// their offset.
type boltRecord struct {
	ID          string         `json:"id"`
	State       approval.State `json:"state"`
	Agent       string         `json:"agent"`
	Digest      string         `json:"digest"`
	Rule        string         `json:"rule"`
	Reason      string         `json:"reason,omitempty"`
	Method      string         `json:"method"`
	Host        string         `json:"host"`
	Path        string         `json:"path"`
	Body        string         `json:"body,omitempty"`
	ContentType string         `json:"content_type,omitempty"`
	Approvers   []string       `json:"approvers,omitempty"`
	Notify      []string       `json:"notify,omitempty"`
	CreatedAt   time.Time      `json:"created_at"`
	ExpiresAt   time.Time      `json:"expires_at"`
	UseWithin   int64          `json:"use_within_ns"`
	DecidedAt   time.Time      `json:"decided_at,omitzero"`
	DecidedBy   string         `json:"decided_by,omitempty"`
	Comment     string         `json:"comment,omitempty"`
	UseBy       time.Time      `json:"use_by,omitzero"`
	UsedAt      time.Time      `json:"used_at,omitzero"`
	Condition   string         `json:"condition,omitempty"`
}

func boltPut(recs *bolt.Bucket, a approval.Approval) error {
	v, err := json.Marshal(boltRecord{
		ID: a.ID, State: a.State, Agent: a.Agent, Digest: a.Digest, Rule: a.Rule, Reason: a.Reason,
		Method: a.Method, Host: a.Host, Path: a.Path, Body: a.Body, ContentType: a.ContentType,
		Approvers: a.Approvers, Notify: a.Notify, CreatedAt: a.CreatedAt, ExpiresAt: a.ExpiresAt,
		UseWithin: int64(a.UseWithin), DecidedAt: a.DecidedAt, DecidedBy: a.DecidedBy,
		Comment: a.Comment, UseBy: a.UseBy, UsedAt: a.UsedAt, Condition: a.Condition,
	})
	if err != nil {
		return fmt.Errorf("boltstore: encode %s: %w", a.ID, err)
	}
	return recs.Put([]byte(a.ID), v)
}

// boltGet reads one approval; ok is false when there is none.
func boltGet(recs *bolt.Bucket, id []byte) (a approval.Approval, ok bool, err error) {
	v := recs.Get(id)
	if v == nil {
		return approval.Approval{}, false, nil
	}
	a, err = boltDecode(v)
	return a, err == nil, err
}

func boltDecode(v []byte) (approval.Approval, error) {
	var r boltRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return approval.Approval{}, fmt.Errorf("boltstore: corrupt record in the bolt store: %w", err)
	}
	return approval.Approval{
		ID: r.ID, State: r.State, Agent: r.Agent, Digest: r.Digest, Rule: r.Rule, Reason: r.Reason,
		Method: r.Method, Host: r.Host, Path: r.Path, Body: r.Body, ContentType: r.ContentType,
		Approvers: r.Approvers, Notify: r.Notify, CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt,
		UseWithin: time.Duration(r.UseWithin), DecidedAt: r.DecidedAt, DecidedBy: r.DecidedBy,
		Comment: r.Comment, UseBy: r.UseBy, UsedAt: r.UsedAt, Condition: r.Condition,
	}, nil
}
