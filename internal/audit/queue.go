package audit

import (
	"fmt"
	"log/slog"
	"sync"
)

// Queue hands decisions to a Log on its own goroutine, so that a Check call does not wait for
// encoding, hashing and the write. Nothing is dropped: when the queue is full, Decision waits;
// a record the Log cannot write is logged and counted, each one.
// Close writes everything queued, then closes the Log.
type Queue struct {
	log    *Log
	errLog *slog.Logger
	ch     chan entry
	done   chan struct{}
	once   sync.Once
	mu     sync.RWMutex // held for reading while sending, for writing while closing
	closed bool
}

// NewQueue starts a queue of the given capacity in front of log. Every record the Log does not
// write is reported to errLog (nil discards them), one line each, saying what happened to it;
// the Log's Observer counts them.
func NewQueue(log *Log, capacity int, errLog *slog.Logger) *Queue {
	if errLog == nil {
		errLog = slog.New(slog.DiscardHandler)
	}
	q := &Queue{log: log, errLog: errLog, ch: make(chan entry, capacity), done: make(chan struct{})}
	go q.run()
	return q
}

func (q *Queue) run() {
	defer close(q.done)
	for e := range q.ch {
		var err error
		if e.kind == "" {
			err = q.log.Decision(e.decision)
		} else {
			err = q.log.Write(e.kind, e.attrs...)
		}
		if err != nil {
			q.report(e, err)
		}
	}
}

// report logs a record the Log did not write, and why.
func (q *Queue) report(e entry, err error) {
	kind, reason := e.kind, ReasonOf(err)
	if kind == "" {
		kind = "decision"
	}
	var msg string
	switch reason {
	case ReasonWrite, ReasonSync:
		msg = "decision log write failed: this record and every later one are lost until agentauthz is restarted"
	case ReasonStopped:
		msg = "decision log record lost: the log stopped after an earlier write failure"
	case ReasonClosed:
		msg = "decision log record lost: the log is closed"
	case ReasonClock:
		msg = "decision log record lost: the clock gave a time a record cannot carry"
	default:
		msg = "decision log record refused: its fields cannot be recorded (a bug)"
	}
	attrs := []any{"kind", kind, "reason", reason, "error", err.Error()}
	if e.kind == "" {
		attrs = append(attrs, "decision_id", e.decision.ID, "outcome", e.decision.Outcome, "code", e.decision.Code)
	}
	q.errLog.Error(msg, attrs...)
}

// entry is a queued record: a decision, or an event of another kind.
type entry struct {
	decision Decision
	kind     string
	attrs    []slog.Attr
}

// Decision queues one decision. After Close it returns a *WriteError wrapping ErrClosed.
func (q *Queue) Decision(d Decision) error { return q.put(entry{decision: d}) }

// Write queues one event of another kind (approval events), in the same chain.
func (q *Queue) Write(kind string, attrs ...slog.Attr) error {
	if kind == "" || kind == "decision" {
		return fmt.Errorf("audit: event kind %q is reserved", kind)
	}
	return q.put(entry{kind: kind, attrs: attrs})
}

func (q *Queue) put(e entry) error {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.closed {
		kind := e.kind
		if kind == "" {
			kind = "decision"
		}
		return q.log.refuse(kind, ReasonClosed, ErrClosed)
	}
	q.ch <- e
	return nil
}

// Close writes what is queued and closes the Log.
func (q *Queue) Close() error {
	var err error
	q.once.Do(func() {
		q.mu.Lock()
		q.closed = true
		close(q.ch)
		q.mu.Unlock()
		<-q.done
		err = q.log.Close()
	})
	return err
}
