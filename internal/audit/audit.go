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
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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

// Open opens (or creates, mode 0600) a log file for appending. If the file already has records,
// the chain continues from its last line, which must be a complete, self-consistent record,
// keyed with opts.Key if the chain is keyed, and not keyed if opts.Key is empty: Open refuses to
// append to a file whose last line is truncated or corrupt, or to mix keyed and unkeyed records.
// It checks only that line; Verify checks the rest. An empty file continues the chain of its
// newest rotated file (FILE.<16 digits>), if there is one. The file is locked against a second
// Log, in this process or another, where the system has flock.
func Open(path string, opts Options) (*Log, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		syncDir(filepath.Dir(path)) // the new file's name survives a crash of the machine
	} else if errors.Is(err, fs.ErrExist) {
		f, err = os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	fail := func(err error) (*Log, error) {
		f.Close()
		return nil, err
	}
	if err := lockFile(f); err != nil {
		return fail(fmt.Errorf("audit: %s is in use by another audit log (%v)", path, err))
	}
	tail, size, err := tailOf(f, opts.Key)
	if err != nil {
		return fail(fmt.Errorf("audit: %s: %v", path, err))
	}
	switch {
	case size > 0:
		opts.From = tail
	default:
		prev, err := lastRotated(path)
		if err != nil {
			return fail(fmt.Errorf("audit: %s: %v", path, err))
		}
		if prev != "" {
			pf, err := os.Open(prev)
			if err != nil {
				return fail(fmt.Errorf("audit: %w", err))
			}
			tail, _, err = tailOf(pf, opts.Key)
			pf.Close()
			if err != nil {
				return fail(fmt.Errorf("audit: %s, the file %s continues: %v", prev, path, err))
			}
			opts.From = tail
		}
	}
	l := newLog(f, opts)
	if l.err != nil {
		return fail(l.err)
	}
	l.f, l.path, l.size, l.rotate = f, path, size, opts.Rotate
	l.file.Store(f)
	if every := opts.SyncEvery; every < 0 {
		l.syncEach = true
	} else {
		if every == 0 {
			every = DefaultSyncEvery
		}
		l.stop, l.done = make(chan struct{}), make(chan struct{})
		go l.syncLoop(every)
	}
	return l, nil
}

// syncDir fsyncs a directory, as far as the system allows: not every one can.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
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

// newSum is the hash of a chain: HMAC-SHA256 under key, or SHA-256 without one.
func newSum(key []byte) (hash.Hash, bool) {
	if len(key) > 0 {
		return hmac.New(sha256.New, key), true
	}
	return sha256.New(), false
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

// reserved are the keys a Log writes itself, or that slog's handler treats as its own.
var reserved = []string{slog.TimeKey, slog.LevelKey, slog.MessageKey, "kind", "seq", "prev", "hash", "hmac", oversizeKey}

// Write appends one event. kind is "decision", "approval.requested", "approval.approved", ...;
// attrs are the event's fields. A reserved or repeated top-level key is an error and is not
// written; a long string is cut to MaxField, and a record still too long is shortened (see the
// package doc). An error is a *WriteError.
func (l *Log) Write(kind string, attrs ...slog.Attr) error {
	if err := l.checkEvent(kind, attrs); err != nil {
		return err
	}
	return l.write(kind, l.boundAttrs(kind, attrs))
}

// checkEvent refuses an event whose kind is empty or whose keys are reserved or repeated.
func (l *Log) checkEvent(kind string, attrs []slog.Attr) error {
	if kind == "" {
		return l.refuse(kind, ReasonInvalid, errors.New("audit: event kind is empty"))
	}
	var buf [16]string
	if _, err := checkKeys(attrs, buf[:0]); err != nil {
		return l.refuse(kind, ReasonInvalid, err)
	}
	return nil
}

// addEvent is Write for a Queue's writer: the record is batched, not written. Called with l.mu
// held.
func (l *Log) addEvent(kind string, attrs []slog.Attr) error {
	if err := l.checkEvent(kind, attrs); err != nil {
		return err
	}
	return l.add(kind, l.boundAttrs(kind, attrs))
}

// refuse reports a record not written for a reason of its own, without touching the log.
func (l *Log) refuse(kind, reason string, err error) error {
	we := &WriteError{Reason: reason, Kind: kind, Err: err}
	if l.obs != nil {
		l.obs.Failed(we)
	}
	return we
}

// checkKeys checks the top-level keys attrs will be written with, seen holding those before.
// An attribute with an empty key and a group value is inlined by slog: its keys are top-level.
func checkKeys(attrs []slog.Attr, seen []string) ([]string, error) {
	for _, a := range attrs {
		if a.Key == "" {
			if v := a.Value.Resolve(); v.Kind() == slog.KindGroup {
				var err error
				if seen, err = checkKeys(v.Group(), seen); err != nil {
					return nil, err
				}
				continue
			}
		}
		if slices.Contains(reserved, a.Key) {
			return nil, fmt.Errorf("audit: field %q is reserved", a.Key)
		}
		if slices.Contains(seen, a.Key) {
			return nil, fmt.Errorf("audit: field %q appears twice", a.Key)
		}
		seen = append(seen, a.Key)
	}
	return seen, nil
}

// write renders, chains and writes one record; attrs' keys are checked and their strings bound.
func (l *Log) write(kind string, attrs []slog.Attr) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.add(kind, attrs); err != nil {
		return err
	}
	if n, err := l.flush(); err != nil {
		return l.fail(kind, ReasonOf(err), err, n)
	}
	return nil
}

// fail reports a record not written (n records, for a batch lost to one failed write), and
// returns the error.
func (l *Log) fail(kind, reason string, err error, n int) error {
	we := &WriteError{Reason: reason, Kind: kind, Err: err}
	if e, ok := errors.AsType[*WriteError](err); ok {
		we = &WriteError{Reason: e.Reason, Kind: kind, Err: e.Err}
	}
	if l.obs != nil {
		for range n {
			l.obs.Failed(we)
		}
	}
	return we
}

// add renders and chains one record into the batch, which flush writes. Called with l.mu held.
// A record add refuses is reported to the observer here; one it accepts is reported by flush.
func (l *Log) add(kind string, attrs []slog.Attr) error {
	return l.addRecord(kind, attrs, nil)
}

// addRecord is add for an event (attrs, rendered by slog's JSON handler) or a decision (d,
// rendered by appendDecision into the same bytes).
func (l *Log) addRecord(kind string, attrs []slog.Attr, d *Decision) error {
	if l.closed {
		return l.fail(kind, ReasonClosed, ErrClosed, 1)
	}
	if l.err != nil {
		return l.fail(kind, ReasonStopped, l.err, 1)
	}
	t := l.clock().UTC()
	if y := t.Year(); t.IsZero() || y < 0 || y > 9999 {
		return l.fail(kind, ReasonClock, fmt.Errorf("audit: the clock says %v; records need a time in years 0001-9999", t), 1)
	}
	var h [64]byte
	if d != nil {
		// A decision's fields are each at most MaxField: it always fits in MaxRecord.
		l.line.b = l.appendDecision(l.line.b[:0], t, d)
		h = l.seal()
	} else {
		var err error
		if h, err = l.render(kind, t, attrs); err != nil {
			return l.fail(kind, ReasonInvalid, err, 1)
		}
		if len(l.line.b) > MaxRecord {
			full := sha256.Sum256(l.line.b)
			if h, err = l.render(kind, t, oversize(attrs, len(l.line.b), full)); err != nil || len(l.line.b) > MaxRecord {
				return l.fail(kind, ReasonInvalid, fmt.Errorf("audit: a %q record cannot be shortened to %d bytes", kind, MaxRecord), 1)
			}
			if l.obs != nil {
				l.obs.Truncated(kind, "")
			}
		}
	}
	if l.rotationDue(t, len(l.line.b)) {
		if l.batched > 0 {
			// The file rotates between records: what is batched goes to the old file first.
			l.held = heldRecord{kind: kind, t: t, hash: h, ok: true}
			return errFlushFirst
		}
		l.rotateNow(kind, t)
	}
	l.append(h)
	return nil
}

// heldRecord is a record add rendered but could not batch before a flush (errFlushFirst).
type heldRecord struct {
	kind string
	t    time.Time
	hash [64]byte
	ok   bool
}

// addHeld batches the record add held back for a flush, rotating the file first. Called with
// l.mu held, after flush.
func (l *Log) addHeld() error {
	r := l.held
	l.held = heldRecord{}
	if !r.ok {
		return errors.New("audit: no record held")
	}
	if l.err != nil {
		return l.fail(r.kind, ReasonStopped, l.err, 1)
	}
	l.rotateNow(r.kind, r.t)
	l.append(r.hash)
	return nil
}

// append batches the record in l.line.b, whose hash is h.
func (l *Log) append(h [64]byte) {
	l.batch = append(l.batch, l.line.b...)
	l.batched++
	l.head = h
	l.seq++
}

// errFlushFirst is add's answer when the file must rotate before the record and records are
// batched for the old file: flush them, then add the record again. Nothing was changed.
var errFlushFirst = errors.New("audit: flush before rotating")

// flush writes the batched records with one Write call. It returns how many records were
// batched, and, if the write or the fsync after it failed, an error: the log then stops, and
// those records are lost. Called with l.mu held.
func (l *Log) flush() (int, error) {
	n := l.batched
	if n == 0 {
		return 0, nil
	}
	b := l.batch
	l.batch, l.batched = l.batch[:0], 0
	if cap(l.batch) > 4*maxBatch {
		l.batch = nil // do not keep one huge batch's buffer
	}
	if _, err := l.w.Write(b); err != nil {
		l.err = fmt.Errorf("audit: write failed, no further records accepted: %w", err)
		return n, &WriteError{Reason: ReasonWrite, Err: l.err}
	}
	l.size += int64(len(b))
	if l.syncEach {
		if err := l.f.Sync(); err != nil {
			l.err = fmt.Errorf("audit: fsync failed, no further records accepted: %w", err)
			return n, &WriteError{Reason: ReasonSync, Err: l.err}
		}
	} else if l.f != nil {
		l.dirty.Store(true)
	}
	l.wmu.Lock()
	l.wseq, l.whash = l.seq, l.head
	l.wmu.Unlock()
	if l.obs != nil {
		l.obs.Written(Head{Seq: l.seq, Hash: string(l.head[:])})
	}
	return n, nil
}

// render writes the record into l.line.b with its chain fields and returns its hash.
func (l *Log) render(kind string, t time.Time, attrs []slog.Attr) (h [64]byte, err error) {
	r := slog.NewRecord(t, slog.LevelInfo, kind, 0)
	r.AddAttrs(attrs...)
	if cap(l.line.b) > 64<<10 {
		l.line.b = nil // do not keep one huge record's buffer
	}
	l.line.b = l.line.b[:0]
	if err := l.h.Handle(context.Background(), r); err != nil {
		return h, fmt.Errorf("audit: %w", err)
	}
	b := l.line.b
	if len(b) < 2 || b[len(b)-2] != '}' || b[len(b)-1] != '\n' {
		return h, errors.New("audit: slog wrote an unexpected line")
	}
	l.line.b = b[:len(b)-2]
	return l.seal(), nil
}

// seal appends the chain fields to the record in l.line.b (its fields, without the closing
// brace) and returns its hash.
func (l *Log) seal() (h [64]byte) {
	b := append(l.line.b, seqField...)
	b = strconv.AppendUint(b, l.seq+1, 10)
	b = append(b, prevField...)
	b = append(b, l.head[:]...)
	b = append(b, '"')
	l.sum.Reset()
	l.sum.Write(b)
	hex.Encode(h[:], l.sum.Sum(l.sumBuf[:0]))
	if l.keyed {
		b = append(b, hmacField...)
	} else {
		b = append(b, hashField...)
	}
	b = append(b, h[:]...)
	b = append(b, "\"}\n"...)
	l.line.b = b
	return h
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

func (l *Log) syncLoop(every time.Duration) {
	defer close(l.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			if !l.dirty.Swap(false) {
				continue
			}
			f := l.file.Load()
			if err := f.Sync(); err != nil {
				if l.file.Load() != f {
					continue // rotated meanwhile: the rotation synced and closed it
				}
				l.mu.Lock()
				if l.err == nil {
					l.err = fmt.Errorf("audit: fsync failed, no further records accepted: %w", err)
				}
				l.mu.Unlock()
				return
			}
		}
	}
}

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

// IsHash reports whether s is a hash as the log writes it: 64 lowercase hex digits.
func IsHash[T string | []byte](s T) bool {
	if len(s) != 64 {
		return false
	}
	for i := range len(s) {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
