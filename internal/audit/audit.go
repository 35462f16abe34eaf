// Package audit is agentauthz's tamper-evident decision log: one JSON object per line, each
// carrying its sequence number and the hash of the line before it, so that a record removed,
// moved, inserted or altered breaks the chain at a line Verify names.
//
// # Line format
//
// A record is one line as log/slog's JSON handler writes it (fields in a fixed order, every key
// and string value JSON-escaped; a decision's line is written directly, byte for byte as the
// handler would), followed by the chain fields:
//
//	{"time":"2026-09-01T12:00:00.123456789Z","kind":"decision",<fields>,"seq":42,"prev":"<64 hex>","hash":"<64 hex>"}\n
//
// where
//
//   - time is when the record was written, UTC, RFC 3339 with nanoseconds. Records are
//     ordered by the chain, not by time: times follow the clock, which may step back.
//   - kind is what happened: "decision", "approval.requested", "approval.approved", ...
//   - the fields are the event's, in the order given; top-level keys are unique, and time,
//     level, msg, kind, seq, prev, hash, hmac and oversize are reserved. A string field longer
//     than MaxField is cut, and ends with a marker giving its length and the SHA-256 of the
//     whole; a record that would still be longer than MaxRecord keeps its short fields and an
//     "oversize" group with its length and SHA-256. No record is dropped for its size.
//   - seq is the record's sequence number in the chain: 1 for the first record of a chain, one
//     more for each record after, across rotated files.
//   - prev is the hash of the previous record. The first record of a chain has Genesis (64
//     zeros), or, in a file that continues a rotated one, the last hash of that file.
//   - hash is the lowercase hex SHA-256 of the line's bytes from the opening brace up to and
//     including the closing quote of prev: everything before `,"hash":"`. In a keyed chain
//     (Options.Key) the member is "hmac" instead, the HMAC-SHA256 of the same bytes under the
//     key. A chain is keyed or not from its first record to its last.
//
// A reader finds seq, prev and hash by position, in the end of the line, never by searching for
// a key:
//
//	,"seq":<digits>,"prev":"<64 hex>","hash":"<64 hex>"}
//
// In valid JSON those bytes can only be the object's last three members (a quote inside a
// string is escaped, so none of them can be inside one), and slog escapes every quote and
// newline in keys and values, so no field value can forge them, or start a new line. A line is
// at most MaxRecord bytes.
//
// # What the chain proves
//
// Verify proves that every line is a well-formed record whose hash matches its content, and
// that each record follows the one before it: nothing was removed, moved, inserted, duplicated
// or altered, except at the end. Two things it cannot see on its own:
//
//   - records removed from the end leave a valid, shorter chain;
//   - an unkeyed hash has no secret: whoever can rewrite the file can rewrite the whole chain.
//
// The first is caught against heads exported out of the writer's reach (Log.Head: agentauthz
// logs it, counts it in a metric and serves it to approvers; VerifyOptions.Heads, agentauthz
// audit verify --head): every record up to an exported head must still be there, unchanged.
// The second is caught by a keyed chain (Options.Key, VerifyOptions.Key): without the key, no
// one can write a record that verifies, so a forged or rewritten chain fails at its first
// forged line.
//
// # Rotation
//
// A Log made by Open with Options.Rotate renames its file when it grows past a size or an age,
// to FILE.<seq of its last record, 16 digits>, and goes on in a new FILE whose first record
// chains from the last one of the renamed file. The rotated files, in name order, followed by
// FILE, are one chain: verify them together.
//
// # Durability
//
// A Log made by Open writes every record to its file, with one write(2), before Write returns:
// a crash of the process loses nothing Write accepted. A Queue in front of a Log (what
// agentauthz serve runs) writes in batches instead, so that no decision waits for the disk: a
// crash of the process loses the records it accepted and had not yet written, at most its
// capacity and, while its writer keeps up, those of the last FlushEvery (see Queue). It fsyncs the file every SyncEvery
// (default one second) if something was written, and on Close and rotation: a crash of the
// machine loses at most the records of the last SyncEvery. A negative SyncEvery fsyncs after
// every record, before Write returns. A Log made by New hands each record to its writer in one
// Write call and never syncs it. After a failed write or fsync the log refuses further records
// (ReasonStopped): the file may end in a partial line, and Open will refuse it until someone
// looks.
package audit

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Genesis is the prev of the first record of a chain.
const Genesis = "0000000000000000000000000000000000000000000000000000000000000000"

// MaxRecord is the longest line a log holds, newline included.
const MaxRecord = 1 << 20

// MaxField is the longest string field a record holds, in bytes: a longer one is cut to this
// length, ending with a marker that gives its length and the SHA-256 of the whole value. A
// decision's fields, each at most MaxField, always fit in MaxRecord.
const MaxField = 8 << 10

// maxBatch is the size past which a batch is written before more records are added to it. A
// batch buffer grown past 4 times that (by one huge event) is not kept for the next one.
const maxBatch = 64 << 10

// DefaultSyncEvery is how often a Log opened with Open fsyncs by default.
const DefaultSyncEvery = time.Second

// ErrClosed is returned by Write after Close.
var ErrClosed = errors.New("audit: log is closed")

// Options configure a Log. The zero value is ready to use.
type Options struct {
	// Clock gives each record its time; nil means time.Now.
	Clock func() time.Time
	// SyncEvery is how often a Log made by Open fsyncs its file when something was written:
	// 0 means DefaultSyncEvery, a negative value after every record (see the package doc).
	SyncEvery time.Duration
	// From is where the chain starts: the head of the file this one continues. The zero value
	// starts a new chain (Genesis, sequence 0). Open ignores it when the file already has
	// records, and when the file is empty but rotated files of it exist: the chain then
	// continues from the file's last record, or the last rotated file's.
	From Head
	// Key, when set, makes the chain keyed: each record carries the HMAC-SHA256 of its content
	// under Key ("hmac") instead of its SHA-256 ("hash"). Keep the key where whoever can write
	// the log cannot read it (see ReadKey).
	Key []byte
	// Rotate, for a Log made by Open, says when to start a new file. The zero value never does.
	Rotate Rotation
	// Observer, when set, is told of every record written, cut, or not written, and of every
	// rotation: metrics and the server log.
	Observer Observer
}

// Rotation says when a Log starts a new file: before a record that would take the file past
// Size bytes, or the first record once the file was opened Every ago. Zero fields never rotate.
type Rotation struct {
	Size  int64
	Every time.Duration
}

// Observer is told what happens to a Log's records. Its methods are called from any goroutine,
// most with the Log's lock held: they must be quick, safe for concurrent use, and must not call
// the Log.
type Observer interface {
	// Written is told the chain's new head after each record.
	Written(head Head)
	// Failed is told of each record not written, and of each failed rotation.
	Failed(err *WriteError)
	// Truncated is told of each field cut to MaxField (field is its key), and of each record
	// shortened to fit MaxRecord (field is "").
	Truncated(kind, field string)
	// Rotated is told of each rotation: the name the file was renamed to, and its last record.
	Rotated(file string, last Head)
}

// Log appends events to a writer, chaining each to the previous one. Safe for concurrent use.
type Log struct {
	mu      sync.Mutex
	w       io.Writer
	f       *os.File                // set by Open: synced, rotated and closed by the Log
	file    atomic.Pointer[os.File] // f, for the sync loop
	path    string
	h       slog.Handler
	line    lineBuf // what h writes, then the chain fields
	batch   []byte  // records rendered and chained, not yet written
	batched int     // how many records batch holds
	held    heldRecord
	head    [64]byte
	seq     uint64 // head and seq: the last record chained (written or batched)
	sumBuf  [sha256.Size]byte
	// wmu guards wseq and whash: the last record written, which Head reads without waiting
	// for a write in progress.
	wmu      sync.Mutex
	wseq     uint64
	whash    [64]byte
	sum      hash.Hash // SHA-256, or HMAC-SHA256 under the key
	keyed    bool
	clock    func() time.Time
	syncEach bool
	rotate   Rotation
	size     int64     // of the file
	opened   time.Time // when the file was first written to after Open, or started
	obs      Observer
	err      error // sticky: set by a failed write or sync
	closed   bool

	dirty atomic.Bool // written since the last sync
	stop  chan struct{}
	done  chan struct{}
}

// lineBuf collects the line slog's handler writes.
type lineBuf struct{ b []byte }

func (lb *lineBuf) Write(p []byte) (int, error) {
	lb.b = append(lb.b, p...)
	return len(p), nil
}

// New writes to w (e.g. os.Stdout), starting a chain from opts.From (a new chain by default).
// Each record reaches w in one Write call; w is not synced, nor closed by Close, nor rotated.
// An invalid opts.From makes every Write fail.
func New(w io.Writer, opts Options) *Log {
	return newLog(w, opts)
}

func newLog(w io.Writer, opts Options) *Log {
	l := &Log{w: w, clock: opts.Clock, obs: opts.Observer}
	if l.clock == nil {
		l.clock = time.Now
	}
	l.h = slog.NewJSONHandler(&l.line, &slog.HandlerOptions{ReplaceAttr: replaceBuiltins})
	l.sum, l.keyed = newSum(opts.Key)
	from := opts.From.hashOrGenesis()
	switch {
	case !IsHash(from):
		l.err = fmt.Errorf("audit: Options.From %q is not a SHA-256 hash (64 lowercase hex digits)", from)
	case from == Genesis && opts.From.Seq != 0:
		l.err = fmt.Errorf("audit: Options.From: the genesis hash has sequence number 0, not %d", opts.From.Seq)
	}
	copy(l.head[:], from)
	l.seq = opts.From.Seq
	l.wseq, l.whash = l.seq, l.head
	return l
}

// replaceBuiltins drops slog's level and renames its message to kind.
func replaceBuiltins(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 {
		switch a.Key {
		case slog.LevelKey:
			return slog.Attr{}
		case slog.MessageKey:
			a.Key = "kind"
		}
	}
	return a
}

// Head returns the chain's head: the sequence number and hash of the last record written (or
// where the chain starts, if none was). Export it somewhere the log's writer cannot rewrite. It
// does not wait for a write in progress.
func (l *Log) Head() Head {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	return Head{Seq: l.wseq, Hash: string(l.whash[:])}
}

// Keyed reports whether the chain is keyed (Options.Key).
func (l *Log) Keyed() bool { return l.keyed }

// Path is the file a Log made by Open writes to; "" for one made by New.
func (l *Log) Path() string { return l.path }

// Close stops the log. For a Log made by Open, every record Write accepted is in the file, and
// fsynced, when Close returns; the file is closed. It returns the error that stopped the log, if
// one did. Closing twice is harmless.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	if l.stop != nil {
		close(l.stop)
		<-l.done
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if n, err := l.flush(); err != nil {
		l.fail("", ReasonOf(err), err, n)
	}
	err := l.err
	if l.f != nil {
		if serr := l.f.Sync(); serr != nil && err == nil {
			err = fmt.Errorf("audit: fsync: %w", serr)
		}
		if cerr := l.f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("audit: %w", cerr)
		}
	}
	return err
}
