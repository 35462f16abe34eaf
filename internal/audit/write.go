package audit

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"
)

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
