package audit

import (
	"fmt"
	"log/slog"
	"sync"
)

// Queue hands decisions to a Log on its own goroutine, so that a Check call does not wait for
// encoding, hashing and the write. Nothing is dropped: when the queue is full, Decision waits.
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

// NewQueue starts a queue of the given capacity in front of log. Write failures are reported
// to errLog (nil discards them): the Log refuses every record after its first failure.
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
	failed := false
	for e := range q.ch {
		var err error
		if e.kind == "" {
			err = q.log.Decision(e.decision)
		} else {
			err = q.log.Write(e.kind, e.attrs...)
		}
		if err != nil && !failed {
			failed = true
			q.errLog.Error("decision log write failed; decisions are no longer recorded", "error", err.Error())
		}
	}
}

// entry is a queued record: a decision, or an event of another kind.
type entry struct {
	decision Decision
	kind     string
	attrs    []slog.Attr
}

// Decision queues one decision. After Close it returns ErrClosed.
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
		return ErrClosed
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
