// Package audit is agentauthz's tamper-evident decision log: one JSON object per line, each
// carrying the hash of the line before it, so that a record removed, moved, inserted or altered
// breaks the chain at a line Verify names.
//
// # Line format
//
// A record is one line written by log/slog's JSON handler (fields in a fixed order, every key
// and string value JSON-escaped), followed by the chain fields:
//
//	{"time":"2026-09-01T12:00:00.123456789Z","kind":"decision",<fields>,"prev":"<64 hex>","hash":"<64 hex>"}\n
//
// where
//
//   - time is when the record was written, UTC, RFC 3339 with nanoseconds. Records are
//     ordered by the chain, not by time: times follow the clock, which may step back.
//   - kind is what happened: "decision", "approval.requested", "approval.approved", ...
//   - the fields are the event's, in the order given; top-level keys are unique, and time,
//     level, msg, kind, prev and hash are reserved.
//   - prev is the hash of the previous record. The first record of a chain has Genesis (64
//     zeros), or, in a file that continues a rotated one, the last hash of that file
//     (Options.From, VerifyOptions.From).
//   - hash is the lowercase hex SHA-256 of the line's bytes from the opening brace up to and
//     including the closing quote of prev: everything before `,"hash":"`.
//
// A reader finds prev and hash by position, in the fixed-length end of the line, never by
// searching for a key:
//
//	,"prev":"<64 hex>","hash":"<64 hex>"}
//
// In valid JSON those bytes can only be the object's last two members (a quote inside a string
// is escaped, so none of them can be inside one), and slog escapes every quote and newline in
// keys and values, so no field value can forge a prev or a hash, or start a new line. A line is
// at most MaxRecord bytes.
//
// # What the chain proves
//
// Verify proves that every line is a well-formed record whose hash matches its content, and
// that each record follows the one before it: nothing was removed, moved, inserted, duplicated
// or altered, except at the end. Two things it cannot see on its own:
//
//   - records removed from the end leave a valid, shorter chain;
//   - the hash has no key: whoever can rewrite the file can rewrite the whole chain.
//
// Both are caught only against a head recorded out of the writer's reach (VerifyOptions.Head,
// agentauthz audit verify --head): export Log.Head at rotation and periodically, e.g. to
// metrics or another system's log. Verify then proves the file up to that head.
//
// # Durability
//
// A Log made by Open writes every record to its file, with one write(2), before Write returns:
// a crash of the process loses nothing Write accepted. It fsyncs the file every SyncEvery
// (default one second) if something was written, and on Close: a crash of the machine loses at
// most the records of the last SyncEvery. A negative SyncEvery fsyncs after every record, before
// Write returns. A Log made by New hands each record to its writer in one Write call and never
// syncs it. After a failed write or fsync the log refuses further records: the file may end in
// a partial line, and Open will refuse it until someone looks.
package audit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Genesis is the prev of the first record of a chain.
const Genesis = "0000000000000000000000000000000000000000000000000000000000000000"

// MaxRecord is the longest line a log holds, newline included.
const MaxRecord = 1 << 20

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
	// From is the hash the first record chains from: the head of the file this one continues
	// after a rotation. Empty means Genesis. Open ignores it when the file already has records:
	// the chain then continues from the file's last record.
	From string
}

// Log appends events to a writer, chaining each to the previous one. Safe for concurrent use.
type Log struct {
	mu       sync.Mutex
	w        io.Writer
	f        *os.File // set by Open: synced and closed by the Log
	h        slog.Handler
	line     lineBuf // what h writes, then the chain fields
	head     [64]byte
	clock    func() time.Time
	syncEach bool
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
// the chain continues from its last line, which must be a complete, self-consistent record:
// Open refuses to append to a file whose last line is truncated or corrupt. It checks only that
// line; Verify checks the rest. The file is locked against a second Log, in this process or
// another, where the system has flock.
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
	tail, err := tailHash(f)
	if err != nil {
		return fail(fmt.Errorf("audit: %s: %v", path, err))
	}
	if tail != "" {
		opts.From = tail
	}
	l := newLog(f, opts)
	if l.err != nil {
		return fail(l.err)
	}
	l.f = f
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

// New writes to w (e.g. os.Stdout), starting a new chain from opts.From (Genesis by default).
// Each record reaches w in one Write call; w is not synced, nor closed by Close. An invalid
// opts.From makes every Write fail.
func New(w io.Writer, opts Options) *Log {
	return newLog(w, opts)
}

func newLog(w io.Writer, opts Options) *Log {
	l := &Log{w: w, clock: opts.Clock}
	if l.clock == nil {
		l.clock = time.Now
	}
	l.h = slog.NewJSONHandler(&l.line, &slog.HandlerOptions{ReplaceAttr: replaceBuiltins})
	from := opts.From
	if from == "" {
		from = Genesis
	}
	if !IsHash(from) {
		l.err = fmt.Errorf("audit: Options.From %q is not a SHA-256 hash (64 lowercase hex digits)", from)
	}
	copy(l.head[:], from)
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

// reserved are the keys a Log writes itself, or that slog's handler treats as its own.
var reserved = []string{slog.TimeKey, slog.LevelKey, slog.MessageKey, "kind", "prev", "hash"}

// Write appends one event. kind is "decision", "approval.requested", "approval.approved", ...;
// attrs are the event's fields. A reserved or repeated top-level key is an error, as is a
// record longer than MaxRecord; neither is written.
func (l *Log) Write(kind string, attrs ...slog.Attr) error {
	if kind == "" {
		return errors.New("audit: event kind is empty")
	}
	var buf [16]string
	if _, err := checkKeys(attrs, buf[:0]); err != nil {
		return err
	}
	return l.write(kind, attrs)
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

// write renders, chains and writes one record; attrs' keys are checked.
func (l *Log) write(kind string, attrs []slog.Attr) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	if l.closed {
		return ErrClosed
	}
	t := l.clock().UTC()
	if y := t.Year(); t.IsZero() || y < 0 || y > 9999 {
		return fmt.Errorf("audit: the clock says %v; records need a time in years 0001-9999", t)
	}
	r := slog.NewRecord(t, slog.LevelInfo, kind, 0)
	r.AddAttrs(attrs...)
	if cap(l.line.b) > 64<<10 {
		l.line.b = nil // do not keep one huge record's buffer
	}
	l.line.b = l.line.b[:0]
	if err := l.h.Handle(context.Background(), r); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	b := l.line.b
	if len(b) < 2 || b[len(b)-2] != '}' || b[len(b)-1] != '\n' {
		return errors.New("audit: slog wrote an unexpected line")
	}
	b = append(b[:len(b)-2], `,"prev":"`...)
	b = append(b, l.head[:]...)
	b = append(b, '"')
	sum := sha256.Sum256(b)
	var h [64]byte
	hex.Encode(h[:], sum[:])
	b = append(b, `,"hash":"`...)
	b = append(b, h[:]...)
	b = append(b, "\"}\n"...)
	l.line.b = b
	if len(b) > MaxRecord {
		return fmt.Errorf("audit: a %q record of %d bytes is longer than the limit, %d", kind, len(b), MaxRecord)
	}
	if _, err := l.w.Write(b); err != nil {
		l.err = fmt.Errorf("audit: write failed, no further records accepted: %w", err)
		return l.err
	}
	l.head = h
	if l.syncEach {
		if err := l.f.Sync(); err != nil {
			l.err = fmt.Errorf("audit: fsync failed, no further records accepted: %w", err)
			return l.err
		}
	} else if l.f != nil {
		l.dirty.Store(true)
	}
	return nil
}

// Head returns the hash of the last record written (or the chain's start if none was): what
// Verify must find at the end of the log. Export it somewhere the log's writer cannot rewrite.
func (l *Log) Head() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.head[:])
}

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
			if err := l.f.Sync(); err != nil {
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
