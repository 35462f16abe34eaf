package audit

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of QueueOptions.
const (
	DefaultQueueCapacity = 4096
	DefaultFlushEvery    = 5 * time.Millisecond
	DefaultCloseTimeout  = 10 * time.Second
)

// ErrFull is the error of a record dropped because the queue was full (ReasonFull). The queue
// has counted and logged it: callers need not log it again.
var ErrFull = errors.New("audit: the decision log queue is full (its writer is blocked or slower than the decisions); the record was dropped so that the decision was not delayed")

// QueueOptions configure a Queue. The zero value is ready to use.
type QueueOptions struct {
	// Capacity is how many records may wait to be written; 0 means DefaultQueueCapacity. A
	// record that finds the queue full is dropped (ReasonFull), counted and logged: the caller
	// never waits for the log.
	Capacity int
	// FlushEvery is how long the writer lets records gather before it writes them, in one
	// write(2); 0 means DefaultFlushEvery. A queue half full is written at once.
	FlushEvery time.Duration
	// CloseTimeout bounds how long Close waits for the writer; 0 means DefaultCloseTimeout.
	// Records still queued then are reported lost (ReasonClosed).
	CloseTimeout time.Duration
	// ErrLog receives a line for every record the Log does not write and, at most once a
	// second, how many records a full queue dropped; nil discards them. The Log's Observer
	// counts every one.
	ErrLog *slog.Logger
}

// Queue hands records to a Log on a goroutine of its own, in batches, so that a decision never
// waits for encoding, hashing or the disk. Records are chained in the order Decision and Write
// accepted them, and written FlushEvery after the first of a batch (sooner when the queue is
// half full), a batch in one write(2).
//
// What a crash can lose: records accepted and not yet handed to write(2), at most Capacity
// of them and, while the writer keeps up, those of the last FlushEvery (plus the time to
// render and write a batch). A clean Close loses nothing: it writes every record accepted
// before it, then closes the Log. (A crash of the machine also loses what was written but not
// yet fsynced: Options.SyncEvery.)
//
// When the writer cannot keep up, or is blocked (a full disk that does not fail the write, a
// stalled stdout reader), the queue fills and further records are dropped, not waited for:
// each one is counted (the Observer's Failed, ReasonFull) and the drops are logged at most
// once a second with their number. A record the Log refuses or fails to write is counted and
// logged, each one.
type Queue struct {
	log          *Log
	errLog       *slog.Logger
	capacity     int
	flushEvery   time.Duration
	closeTimeout time.Duration

	mu      sync.Mutex
	buf     []entry // accepted, not yet taken by the writer
	closed  bool
	wake    chan struct{} // the queue went from empty to not empty
	hurry   chan struct{} // the queue is half full
	closing chan struct{} // closed by Close
	done    chan struct{} // closed when the writer has returned

	dropped  atomic.Int64 // dropped since the last line logged about drops
	lastDrop atomic.Int64 // when that line was logged, Unix nanoseconds
	once     sync.Once
	closeErr error

	pending []int // the writer's: which records of a batch the Log holds unwritten
}

// NewQueue starts a queue in front of log.
func NewQueue(log *Log, opts QueueOptions) *Queue {
	q := &Queue{
		log: log, errLog: opts.ErrLog, capacity: opts.Capacity, flushEvery: opts.FlushEvery, closeTimeout: opts.CloseTimeout,
		wake: make(chan struct{}, 1), hurry: make(chan struct{}, 1), closing: make(chan struct{}), done: make(chan struct{}),
	}
	if q.errLog == nil {
		q.errLog = slog.New(slog.DiscardHandler)
	}
	if q.capacity <= 0 {
		q.capacity = DefaultQueueCapacity
	}
	if q.flushEvery <= 0 {
		q.flushEvery = DefaultFlushEvery
	}
	if q.closeTimeout <= 0 {
		q.closeTimeout = DefaultCloseTimeout
	}
	go q.run()
	return q
}

// entry is a queued record: a decision, or an event of another kind.
type entry struct {
	decision Decision
	kind     string
	attrs    []slog.Attr
}

func (e *entry) kindName() string {
	if e.kind == "" {
		return "decision"
	}
	return e.kind
}

// Decision queues one decision. It never waits for the log: after Close it returns a
// *WriteError wrapping ErrClosed, and when the queue is full one wrapping ErrFull.
func (q *Queue) Decision(d Decision) error { return q.put(entry{decision: d}) }

// Write queues one event of another kind (approval events), in the same chain, as Decision.
func (q *Queue) Write(kind string, attrs ...slog.Attr) error {
	if kind == "" || kind == "decision" {
		return fmt.Errorf("audit: event kind %q is reserved", kind)
	}
	return q.put(entry{kind: kind, attrs: attrs})
}

func (q *Queue) put(e entry) error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return q.log.refuse(e.kindName(), ReasonClosed, ErrClosed)
	}
	n := len(q.buf)
	if n >= q.capacity {
		q.mu.Unlock()
		return q.drop(e.kindName())
	}
	q.buf = append(q.buf, e)
	q.mu.Unlock()
	switch n + 1 {
	case 1:
		signal(q.wake)
	case q.capacity / 2:
		signal(q.hurry)
	}
	return nil
}

// signal sends on a channel of capacity 1 without waiting: one pending signal is enough.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// drop counts a record the full queue refused, and logs the drops at most once a second.
func (q *Queue) drop(kind string) error {
	err := q.log.refuse(kind, ReasonFull, ErrFull)
	q.dropped.Add(1)
	now := time.Now().UnixNano()
	if last := q.lastDrop.Load(); now-last >= int64(time.Second) && q.lastDrop.CompareAndSwap(last, now) {
		q.logDrops()
	}
	return err
}

func (q *Queue) logDrops() {
	if n := q.dropped.Swap(0); n > 0 {
		q.errLog.Error("decision log queue full: records dropped, not written (the writer is blocked or slower than the decisions; see agentauthz_decision_log_failures_total{reason=\"full\"})",
			"dropped", n, "capacity", q.capacity)
	}
}

func (q *Queue) run() {
	defer close(q.done)
	timer := time.NewTimer(q.flushEvery)
	timer.Stop()
	var spare []entry
	for {
		select {
		case <-q.wake:
		case <-q.closing:
			q.writeAll(spare)
			return
		}
		timer.Reset(q.flushEvery)
		select {
		case <-timer.C:
		case <-q.hurry:
			timer.Stop()
		case <-q.closing:
			timer.Stop()
		}
		spare = q.take(spare)
	}
}

// writeAll writes what is queued until nothing is: after Close, nothing more can be.
func (q *Queue) writeAll(spare []entry) {
	for {
		q.mu.Lock()
		n := len(q.buf)
		q.mu.Unlock()
		if n == 0 {
			return
		}
		spare = q.take(spare)
	}
}

// take writes the queued records and returns the emptied buffer, for the next time.
func (q *Queue) take(spare []entry) []entry {
	q.mu.Lock()
	batch := q.buf
	q.buf = spare[:0]
	q.mu.Unlock()
	q.write(batch)
	clear(batch) // let go of the records' strings
	if cap(batch) > 2*q.capacity {
		return nil // grown past what the queue holds: by events of another kind only
	}
	return batch[:0]
}

// write renders and chains batch into the Log, and writes it in as few writes as its size
// allows. Every record not written is reported.
func (q *Queue) write(batch []entry) {
	l := q.log
	l.mu.Lock()
	defer l.mu.Unlock()
	pending := q.pending[:0] // the records in the Log's batch, by index
	flush := func() {
		if _, err := l.flush(); err != nil {
			for _, i := range pending {
				q.report(&batch[i], l.fail(batch[i].kindName(), ReasonOf(err), err, 1))
			}
		}
		pending = pending[:0]
	}
	for i := range batch {
		e := &batch[i]
		err := q.add(e)
		if errors.Is(err, errFlushFirst) {
			flush()
			err = l.addHeld()
		}
		if err != nil {
			q.report(e, err)
			continue
		}
		pending = append(pending, i)
		if len(l.batch) >= maxBatch {
			flush()
		}
	}
	flush()
	q.pending = pending
}

// add adds one record to the Log's batch; called with the Log's lock held.
func (q *Queue) add(e *entry) error {
	if e.kind == "" {
		return q.log.addDecision(e.decision)
	}
	return q.log.addEvent(e.kind, e.attrs)
}

// report logs a record the Log did not write, and why.
func (q *Queue) report(e *entry, err error) {
	kind, reason := e.kindName(), ReasonOf(err)
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

// Close writes every record accepted before it and closes the Log. If the writer is blocked for
// longer than CloseTimeout, the records still queued are reported lost and Close returns an
// error without waiting further.
func (q *Queue) Close() error {
	q.once.Do(func() {
		q.mu.Lock()
		q.closed = true
		q.mu.Unlock()
		close(q.closing)
		t := time.NewTimer(q.closeTimeout)
		defer t.Stop()
		select {
		case <-q.done:
		case <-t.C:
			q.mu.Lock()
			lost := q.buf
			q.buf = nil
			q.mu.Unlock()
			for i := range lost {
				q.report(&lost[i], q.log.refuse(lost[i].kindName(), ReasonClosed, ErrClosed))
			}
			q.closeErr = fmt.Errorf("audit: the decision log writer was blocked for %v at shutdown: %d queued records lost, and the batch being written may be", q.closeTimeout, len(lost))
			q.logDrops()
			return
		}
		q.logDrops()
		q.closeErr = q.log.Close()
	})
	return q.closeErr
}
