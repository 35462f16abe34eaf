package audit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Records queued from many goroutines are chained in the order each goroutine queued them,
// across batches and rotations, and Close writes every one accepted: the files verify, and
// hold exactly the records accepted.
func TestQueueKeepsOrderAndCloseWritesAll(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l := open(t, path, Options{Rotate: Rotation{Size: 16 << 10}})
	q := NewQueue(l, QueueOptions{Capacity: 1 << 20, FlushEvery: time.Millisecond})
	const goroutines, each = 8, 400
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("%d-%d", g, i)
				var err error
				if i%3 == 2 {
					err = q.Write("approval.requested", slog.String("id", id))
				} else {
					err = q.Decision(Decision{ID: id, Outcome: "allow", Status: 200})
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	files := rotatedFiles(t, path)
	if len(files) < 3 {
		t.Fatalf("%d files: the test wants rotations between batches", len(files))
	}
	n, head, err := verifyFiles(files, VerifyOptions{Heads: []Head{l.Head()}})
	if err != nil || n != goroutines*each || head != l.Head() {
		t.Fatalf("Verify: %d records, head %v, %v; want %d, %v", n, head, err, goroutines*each, l.Head())
	}
	next := make([]int, goroutines)
	for _, f := range files {
		for _, line := range readLines(t, f) {
			g, i, _ := strings.Cut(decode(t, line)["id"].(string), "-")
			gi, _ := strconv.Atoi(g)
			ii, _ := strconv.Atoi(i)
			if ii != next[gi] {
				t.Fatalf("goroutine %d: record %d where %d was due", gi, ii, next[gi])
			}
			next[gi]++
		}
	}
}

// A record reaches the file FlushEvery after it was queued, without Close: what a crash can lose
// is bounded in time as well as by Capacity. The head moves only once the record is written.
func TestQueueWritesWithoutClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l := open(t, path, Options{})
	q := NewQueue(l, QueueOptions{FlushEvery: 10 * time.Millisecond})
	defer q.Close()
	if err := q.Decision(Decision{ID: "d1", Outcome: "allow"}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		b, _ := os.ReadFile(path)
		if bytes.Count(b, []byte("\n")) == 1 {
			if h := l.Head(); h.Seq != 1 || !strings.Contains(string(b), h.Hash) {
				t.Errorf("head %v after the record was written:\n%s", h, b)
			}
			return
		}
		if l.Head().Seq != 0 {
			t.Fatal("the head moved before the record was in the file")
		}
		if time.Now().After(deadline) {
			t.Fatal("the record was not written without Close")
		}
	}
}

// gateWriter blocks every Write until open is closed, telling entered when the first begins.
type gateWriter struct {
	entered chan struct{}
	open    chan struct{}
	once    sync.Once
	buf     bytes.Buffer
}

func newGate() *gateWriter {
	return &gateWriter{entered: make(chan struct{}), open: make(chan struct{})}
}

func (w *gateWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.entered) })
	<-w.open
	return w.buf.Write(p)
}

// A blocked writer (a full disk that does not fail the write, a stalled stdout reader) never
// stalls the caller: once the queue is full, records are dropped, each one counted, and the
// drops logged with their number. When the writer moves again, every record accepted is
// written, in one valid chain.
func TestQueueBlockedWriterNeverStalls(t *testing.T) {
	obs := &observer{}
	var logBuf syncBuffer
	w := newGate()
	l := New(w, Options{Clock: clock(), Observer: obs})
	const capacity = 8
	q := NewQueue(l, QueueOptions{Capacity: capacity, FlushEvery: time.Millisecond, ErrLog: slog.New(slog.NewJSONHandler(&logBuf, nil))})
	if err := q.Decision(Decision{ID: "first"}); err != nil {
		t.Fatal(err)
	}
	<-w.entered // the writer is blocked in Write with the first record
	accepted, full := 1, 0
	for i := range 100 {
		err := q.Decision(Decision{ID: fmt.Sprint("d", i)})
		switch {
		case err == nil:
			accepted++
		case errors.Is(err, ErrFull) && ReasonOf(err) == ReasonFull:
			full++
		default:
			t.Fatalf("Decision %d: %v", i, err)
		}
	}
	if accepted != 1+capacity || full != 100-capacity {
		t.Errorf("%d accepted, %d dropped; want %d and %d", accepted, full, 1+capacity, 100-capacity)
	}
	if got := strings.Count(strings.Join(obs.reasons(), " "), ReasonFull); got != full {
		t.Errorf("observer counted %d drops, want %d", got, full)
	}
	close(w.open)
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	n, _, err := Verify(bytes.NewReader(w.buf.Bytes()), VerifyOptions{})
	if err != nil || n != accepted {
		t.Errorf("Verify: %d records, %v; want %d", n, err, accepted)
	}
	logged := 0
	for line := range strings.Lines(logBuf.String()) {
		rec := decode(t, line)
		if !strings.HasPrefix(rec["msg"].(string), "decision log queue full") {
			t.Errorf("unexpected server log line %s", line)
			continue
		}
		logged += int(rec["dropped"].(float64))
	}
	if logged != full {
		t.Errorf("the server log says %d records dropped, want %d:\n%s", logged, full, logBuf.String())
	}
}

// A writer blocked at shutdown does not hold Close forever: after CloseTimeout the records still
// queued are reported lost, and Close says so.
func TestQueueCloseGivesUpOnBlockedWriter(t *testing.T) {
	obs := &observer{}
	w := newGate()
	defer close(w.open)
	q := NewQueue(New(w, Options{Clock: clock(), Observer: obs}), QueueOptions{FlushEvery: time.Millisecond, CloseTimeout: 20 * time.Millisecond})
	q.Decision(Decision{ID: "in-write"})
	<-w.entered
	for i := range 3 {
		if err := q.Decision(Decision{ID: fmt.Sprint("queued", i)}); err != nil {
			t.Fatal(err)
		}
	}
	err := q.Close()
	if err == nil || !strings.Contains(err.Error(), "3 queued records lost") {
		t.Errorf("Close = %v", err)
	}
	if got := strings.Join(obs.reasons(), " "); got != "closed closed closed" {
		t.Errorf("reasons observed %q", got)
	}
}

// A failing writer never stalls the caller either: every record is accepted or refused at once,
// and each one is reported.
func TestQueueFailingWriter(t *testing.T) {
	obs := &observer{}
	q := NewQueue(New(&failWriter{}, Options{Clock: clock(), Observer: obs}), QueueOptions{FlushEvery: time.Millisecond})
	const n = 1000
	refused := 0
	for i := range n {
		if err := q.Decision(Decision{ID: fmt.Sprint(i)}); err != nil {
			if ReasonOf(err) != ReasonFull {
				t.Fatal(err)
			}
			refused++
		}
	}
	q.Close()
	reasons := obs.reasons()
	if len(reasons) != n {
		t.Fatalf("%d records reported, want %d", len(reasons), n)
	}
	counts := map[string]int{}
	for _, r := range reasons {
		counts[r]++
	}
	if counts[ReasonWrite] == 0 || counts[ReasonFull] != refused || counts[ReasonWrite]+counts[ReasonStopped]+counts[ReasonFull] != n {
		t.Errorf("reasons %v", counts)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// BenchmarkQueue is a decision through the queue from many goroutines, the writer rendering,
// chaining and writing batches behind it: a caller that finds the queue full tries again, so
// the time per record is the pipeline's, whichever side is slower.
func BenchmarkQueue(b *testing.B) {
	d := benchDecision
	for _, bc := range []struct {
		name string
		log  func(b *testing.B) *Log
	}{
		{"file", func(b *testing.B) *Log { return open(b, filepath.Join(b.TempDir(), "audit.log"), Options{}) }},
		{"discard", func(b *testing.B) *Log { return New(io.Discard, Options{}) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			q := NewQueue(bc.log(b), QueueOptions{})
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					for {
						err := q.Decision(d)
						if err == nil {
							break
						}
						if ReasonOf(err) != ReasonFull {
							b.Error(err)
							return
						}
						runtime.Gosched()
					}
				}
			})
			if err := q.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}
