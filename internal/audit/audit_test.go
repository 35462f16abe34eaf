package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a deterministic clock: each call is one millisecond after the previous one.
func clock() func() time.Time {
	var mu sync.Mutex
	t := time.Date(2026, 9, 1, 12, 0, 0, 0, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(time.Millisecond)
		return t
	}
}

func open(t testing.TB, path string, opts Options) *Log {
	t.Helper()
	if opts.Clock == nil {
		opts.Clock = clock()
	}
	l, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l
}

func verifyFile(t *testing.T, path string, opts VerifyOptions) (int, string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, head, err := Verify(f, opts)
	if err != nil {
		t.Fatalf("Verify(%s): %v", filepath.Base(path), err)
	}
	return n, head
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.SplitAfter(string(b), "\n")[:bytes.Count(b, []byte("\n"))]
}

func decode(t *testing.T, line string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("%v: %q", err, line)
	}
	return m
}

func TestLineFormat(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf, Options{Clock: clock()})
	if err := l.Decision(Decision{ID: "d1", Agent: "spiffe://acme.internal/agent/bi", Outcome: "deny", Code: "route_unknown", Status: 403, Latency: 1500 * time.Nanosecond}); err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSuffix(buf.String(), "\n")
	body := `{"time":"2026-09-01T12:00:00.001Z","kind":"decision","id":"d1","agent":"spiffe://acme.internal/agent/bi","outcome":"deny","code":"route_unknown","status":403,"latency_us":1,"seq":1,"prev":"` + Genesis + `"`
	sum := sha256.Sum256([]byte(body))
	want := body + `,"hash":"` + hex.EncodeToString(sum[:]) + `"}`
	if line != want {
		t.Errorf("line:\n%s\nwant:\n%s", line, want)
	}
	if h := l.Head(); h != (Head{Seq: 1, Hash: hex.EncodeToString(sum[:])}) {
		t.Errorf("Head() = %s", h)
	}
}

func TestConcurrentWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l := open(t, path, Options{SyncEvery: time.Millisecond})
	const goroutines, each = 32, 50
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				var err error
				if i%2 == 0 {
					err = l.Decision(Decision{ID: fmt.Sprintf("%d-%d", g, i), Outcome: "allow", Status: 200})
				} else {
					err = l.Write("approval.requested", slog.String("id", fmt.Sprintf("%d-%d", g, i)), slog.Group("who", slog.String("agent", "a")))
				}
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	head := l.Head()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	n, gotHead := verifyFile(t, path, VerifyOptions{Heads: []Head{head}})
	if n != goroutines*each || gotHead != head.Hash || head.Seq != goroutines*each {
		t.Errorf("Verify: %d records, head %s; want %d, %s", n, gotHead, goroutines*each, head)
	}
	seen := map[string]bool{}
	for _, line := range readLines(t, path) {
		id := decode(t, line)["id"].(string)
		if seen[id] {
			t.Errorf("id %s twice", id)
		}
		seen[id] = true
	}
	if len(seen) != goroutines*each {
		t.Errorf("%d distinct records, want %d", len(seen), goroutines*each)
	}
	if err := l.Write("decision"); !errors.Is(err, ErrClosed) {
		t.Errorf("Write after Close: %v, want ErrClosed", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestReopenContinues(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l := open(t, path, Options{})
	for i := range 3 {
		if err := l.Decision(Decision{ID: fmt.Sprint("a", i)}); err != nil {
			t.Fatal(err)
		}
	}
	head := l.Head()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = open(t, path, Options{From: Head{Seq: 9, Hash: strings.Repeat("f", 64)}}) // From is ignored: the file has records
	if l.Head() != head {
		t.Errorf("reopened Head() = %s, want %s", l.Head(), head)
	}
	for i := range 2 {
		if err := l.Decision(Decision{ID: fmt.Sprint("b", i)}); err != nil {
			t.Fatal(err)
		}
	}
	head = l.Head()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if n, h := verifyFile(t, path, VerifyOptions{Heads: []Head{head}}); n != 5 || h != head.Hash || head.Seq != 5 {
		t.Errorf("Verify: %d records, head %s", n, h)
	}
	lines := readLines(t, path)
	if decode(t, lines[3])["prev"] != decode(t, lines[2])["hash"] {
		t.Error("line 4 does not chain from line 3")
	}
}

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	first, second := filepath.Join(dir, "1.log"), filepath.Join(dir, "2.log")
	l := open(t, first, Options{})
	l.Decision(Decision{ID: "x"})
	from := l.Head()
	l.Close()
	l = open(t, second, Options{From: from})
	l.Decision(Decision{ID: "y"})
	l.Close()
	verifyFile(t, second, VerifyOptions{From: from})
	f, _ := os.Open(second)
	defer f.Close()
	_, _, err := Verify(f, VerifyOptions{})
	if ve := (*VerifyError)(nil); !errors.As(err, &ve) || ve.Line != 1 || ve.Problem != OutOfChain {
		t.Errorf("Verify without From: %v, want line 1 out of chain", err)
	}
	if _, err := Open(filepath.Join(dir, "3.log"), Options{From: Head{Hash: "abc"}}); err == nil {
		t.Error("Open with a bad From succeeded")
	}
}

func TestOpenCreatesPrivateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l := open(t, path, Options{})
	defer l.Close()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", st.Mode().Perm())
	}
	if l.Head() != (Head{Hash: Genesis}) {
		t.Errorf("new log's Head() = %s", l.Head())
	}
	if _, err := Open(path, Options{}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("second Open of a file in use: %v", err)
	}
}

// A record Write accepted is in the file at once, not only after Close or a sync.
func TestWriteReachesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	for _, every := range []time.Duration{-1, 0, time.Hour} {
		os.Remove(path)
		l := open(t, path, Options{SyncEvery: every})
		if err := l.Decision(Decision{ID: "now"}); err != nil {
			t.Fatal(err)
		}
		if lines := readLines(t, path); len(lines) != 1 || decode(t, lines[0])["id"] != "now" {
			t.Errorf("SyncEvery %v: file holds %q before Close", every, lines)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOpenRefusesCorruptTail(t *testing.T) {
	var good bytes.Buffer
	l := New(&good, Options{Clock: clock()})
	for i := range 3 {
		l.Decision(Decision{ID: fmt.Sprint(i), Outcome: "deny"})
	}
	lines := strings.SplitAfter(good.String(), "\n")[:3]
	for name, content := range map[string]string{
		"truncated":      lines[0] + lines[1] + lines[2][:40],
		"no newline":     lines[0] + lines[1] + strings.TrimSuffix(lines[2], "\n"),
		"altered":        lines[0] + lines[1] + strings.Replace(lines[2], "deny", "allow", 1),
		"not JSON":       lines[0] + lines[1] + "hello\n",
		"not a record":   lines[0] + lines[1] + "{\"kind\":\"x\"}\n",
		"empty last":     lines[0] + lines[1] + lines[2] + "\n",
		"someone's text": "root:x:0:0:root:/root:/bin/bash\n",
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.log")
			os.WriteFile(path, []byte(content), 0o600)
			l, err := Open(path, Options{})
			if err == nil {
				l.Close()
				t.Fatal("Open succeeded")
			}
			msg := err.Error()
			t.Log(msg)
			if strings.Contains(msg, "\n") || !strings.Contains(msg, path) || !strings.Contains(msg, "cannot append") {
				t.Errorf("error is not one line naming the file and the problem: %q", msg)
			}
			if b, _ := os.ReadFile(path); string(b) != content {
				t.Error("Open modified the file")
			}
		})
	}
}

type failWriter struct{ calls int }

func (w *failWriter) Write(p []byte) (int, error) {
	w.calls++
	return 0, errors.New("disk full")
}

// After a failed write, the log refuses further records: the file may end in a partial line.
func TestWriteErrorIsSticky(t *testing.T) {
	w := &failWriter{}
	l := New(w, Options{})
	if err := l.Decision(Decision{ID: "1"}); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("first Write: %v", err)
	}
	if err := l.Decision(Decision{ID: "2"}); err == nil || w.calls != 1 {
		t.Errorf("second Write: %v after %d writes", err, w.calls)
	}
	if l.Head() != (Head{Hash: Genesis}) {
		t.Error("a failed write moved the head")
	}
	if err := l.Close(); err == nil {
		t.Error("Close did not report the failure")
	}
	if err := New(w, Options{From: Head{Hash: "zz"}}).Decision(Decision{}); err == nil {
		t.Error("New with a bad From wrote")
	}
	if err := New(&bytes.Buffer{}, Options{Clock: func() time.Time { return time.Time{} }}).Decision(Decision{}); err == nil {
		t.Error("a zero clock was accepted")
	}
}

// Close waits for Writes in flight: every Write that succeeded is in the file when Close returns,
// and every other one returned ErrClosed.
func TestCloseDuringWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l := open(t, path, Options{})
	var ok atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				err := l.Decision(Decision{ID: "x"})
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				ok.Add(1)
			}
		})
	}
	for ok.Load() < 100 { // writes are in flight
		runtime.Gosched()
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	written := len(readLines(t, path))
	wg.Wait()
	if n, _ := verifyFile(t, path, VerifyOptions{}); int64(n) != ok.Load() || written != n {
		t.Errorf("%d Writes succeeded, %d records in the file at Close, %d verified", ok.Load(), written, n)
	}
}

func TestSyncLoop(t *testing.T) {
	l := open(t, filepath.Join(t.TempDir(), "audit.log"), Options{SyncEvery: time.Millisecond})
	defer l.Close()
	l.Decision(Decision{ID: "x"})
	for deadline := time.Now().Add(5 * time.Second); l.dirty.Load(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the file was not synced")
		}
	}
}
