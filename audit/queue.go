package audit

import (
	"log/slog"
	"sync"
)

// Queue hands decisions to a Log on its own goroutine, so that a Check call does not wait for
// encoding, hashing and the write. Nothing is dropped: when the queue is full, Decision waits.
// Close writes everything queued, then closes the Log.
type Queue struct {
	log    *Log
	errLog *slog.Logger
	ch     chan Decision
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
	q := &Queue{log: log, errLog: errLog, ch: make(chan Decision, capacity), done: make(chan struct{})}
	go q.run()
	return q
}

func (q *Queue) run() {
	defer close(q.done)
	failed := false
	for d := range q.ch {
		if err := q.log.Decision(d); err != nil && !failed {
			failed = true
			q.errLog.Error("decision log write failed; decisions are no longer recorded", "error", err.Error())
		}
	}
}

// Decision queues one decision. After Close it returns ErrClosed.
func (q *Queue) Decision(d Decision) error {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.closed {
		return ErrClosed
	}
	q.ch <- d
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
