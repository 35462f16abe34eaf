package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// observer records what a Log tells its Observer.
type observer struct {
	mu        sync.Mutex
	written   []Head
	failed    []*WriteError
	truncated []string // kind/field
	rotated   []string
	lastRot   []Head
}

func (o *observer) Written(h Head) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.written = append(o.written, h)
}

func (o *observer) Failed(err *WriteError) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.failed = append(o.failed, err)
}

func (o *observer) Truncated(kind, field string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.truncated = append(o.truncated, kind+"/"+field)
}

func (o *observer) Rotated(file string, last Head) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.rotated = append(o.rotated, file)
	o.lastRot = append(o.lastRot, last)
}

func (o *observer) reasons() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var r []string
	for _, f := range o.failed {
		r = append(r, f.Reason)
	}
	return r
}

// A decision is recorded whatever its size: a huge request id or path from a direct gRPC caller
// is cut to MaxField, ending with its length and the SHA-256 of the whole, and the record
// verifies. Allowed requests included: nothing about the decision is lost but the excess bytes.
func TestHugeFieldsAreBoundNotDropped(t *testing.T) {
	var buf bytes.Buffer
	obs := &observer{}
	l := New(&buf, Options{Clock: clock(), Observer: obs})
	path := "/v1/tickets?q=" + strings.Repeat("é", 1<<20) // 2 MiB, cut between characters
	requestID := strings.Repeat("\x00", 300<<10)          // escaped six times over by JSON
	d := Decision{ID: "d1", RequestID: requestID, Agent: "spiffe://acme.internal/agent/helpdesk", Path: path,
		Outcome: "allow", Code: "allowed", Status: 200, Rule: strings.Repeat("r", 3*MaxField)}
	if err := l.Decision(d); err != nil {
		t.Fatalf("Decision: %v", err)
	}
	if n, _, err := Verify(bytes.NewReader(buf.Bytes()), VerifyOptions{Heads: []Head{l.Head()}}); n != 1 || err != nil {
		t.Fatalf("Verify: %d, %v", n, err)
	}
	rec := decode(t, buf.String())
	for key, whole := range map[string]string{"path": path, "request_id": requestID, "rule": d.Rule} {
		got := rec[key].(string)
		sum := sha256.Sum256([]byte(whole))
		marker := fmt.Sprintf("…[truncated: %d bytes, sha256:%s]", len(whole), hex.EncodeToString(sum[:]))
		if !strings.HasSuffix(got, marker) || !strings.HasPrefix(whole, strings.TrimSuffix(got, marker)) || len(got) > MaxField {
			t.Errorf("%s: %d bytes ending %q; want at most %d bytes, a prefix of the value and %q", key, len(got), got[max(0, len(got)-120):], MaxField, marker)
		}
	}
	if rec["outcome"] != "allow" || rec["id"] != "d1" || rec["agent"] != d.Agent {
		t.Errorf("the decision's short fields: %v", rec)
	}
	if got := strings.Join(obs.truncated, " "); got != "decision/request_id decision/path decision/rule" {
		t.Errorf("truncations observed: %q", got)
	}
	if len(obs.written) != 1 || len(obs.failed) != 0 {
		t.Errorf("observed %d written, %d failed", len(obs.written), len(obs.failed))
	}
}

// An event of another kind too: long strings are cut, in groups as well; a record still too long
// (a huge non-string value) is written short, with its length and digest, never dropped.
func TestHugeEventIsShortenedNotDropped(t *testing.T) {
	var buf bytes.Buffer
	obs := &observer{}
	l := New(&buf, Options{Clock: clock(), Observer: obs})
	big := strings.Repeat("a", 2*MaxField)
	if err := l.Write("approval.requested", slog.String("approval_id", "apr_1"), slog.Group("request", slog.String("path", big))); err != nil {
		t.Fatal(err)
	}
	huge := make([]string, 200)
	for i := range huge {
		huge[i] = strings.Repeat("b", 8<<10)
	}
	if err := l.Write("approval.requested", slog.String("approval_id", "apr_2"), slog.Int("n", 7), slog.Any("list", huge)); err != nil {
		t.Fatalf("Write of a record over MaxRecord: %v", err)
	}
	n, _, err := Verify(bytes.NewReader(buf.Bytes()), VerifyOptions{})
	if n != 2 || err != nil {
		t.Fatalf("Verify: %d, %v", n, err)
	}
	lines := strings.SplitAfter(buf.String(), "\n")
	first := decode(t, lines[0])
	if p := first["request"].(map[string]any)["path"].(string); len(p) > MaxField || !strings.Contains(p, "…[truncated: 16384 bytes") {
		t.Errorf("grouped string not cut: %d bytes", len(p))
	}
	second := decode(t, lines[1])
	over, ok := second[oversizeKey].(map[string]any)
	if !ok || second["approval_id"] != "apr_2" || second["n"] != float64(7) || second["list"] != nil || over["bytes"].(float64) <= MaxRecord || !IsHash(over["sha256"].(string)) {
		t.Errorf("shortened record: %.300s", lines[1])
	}
	if got := strings.Join(obs.truncated, " "); got != "approval.requested/path approval.requested/" {
		t.Errorf("truncations observed: %q", got)
	}
}

// Every record the log does not write is reported, each with its reason, to the observer (the
// failures metric) and, through a queue, to the server log with what happened to it: not only
// the first, and not with one message for all.
func TestEveryFailureIsReported(t *testing.T) {
	obs := &observer{}
	var logBuf bytes.Buffer
	errLog := slog.New(slog.NewJSONHandler(&logBuf, nil))
	w := &failWriter{}
	// One batch, written at Close: the records' fates do not depend on when the writer wakes.
	q := NewQueue(New(w, Options{Clock: clock(), Observer: obs}), QueueOptions{Capacity: 100, FlushEvery: time.Hour, ErrLog: errLog})
	for i := range 3 {
		if err := q.Decision(Decision{ID: fmt.Sprint("d", i), Outcome: "allow", Code: "allowed"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.Write("approval.requested", slog.String("kind", "reserved")); err != nil {
		t.Fatal(err)
	}
	q.Close()
	err := q.Decision(Decision{ID: "late"})
	if ReasonOf(err) != ReasonClosed || !errors.Is(err, ErrClosed) {
		t.Errorf("Decision after Close: %v", err)
	}
	if got, want := strings.Join(obs.reasons(), " "), "invalid write write write closed"; got != want {
		t.Errorf("reasons observed %q, want %q", got, want)
	}
	lines := strings.Split(strings.TrimSpace(logBuf.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d server log lines, want one per record lost:\n%s", len(lines), logBuf.String())
	}
	for i, want := range []struct{ msg, reason, id string }{
		{"decision log record refused: its fields cannot be recorded", ReasonInvalid, ""},
		{"decision log write failed: this record and every later one are lost", ReasonWrite, "d0"},
		{"decision log write failed: this record and every later one are lost", ReasonWrite, "d1"},
		{"decision log write failed: this record and every later one are lost", ReasonWrite, "d2"},
	} {
		rec := decode(t, lines[i])
		if !strings.HasPrefix(rec["msg"].(string), want.msg) || rec["reason"] != want.reason || want.id != "" && rec["decision_id"] != want.id {
			t.Errorf("server log line %d: %s; want %q, reason %s, decision %s", i+1, lines[i], want.msg, want.reason, want.id)
		}
	}
	if !strings.Contains(lines[1], "disk full") || !strings.Contains(lines[0], `field \"kind\" is reserved`) {
		t.Errorf("the lines do not say what happened:\n%s", logBuf.String())
	}
}

func TestBound(t *testing.T) {
	for _, s := range []string{"", "short", strings.Repeat("x", 300), strings.Repeat("€", 100), strings.Repeat("\xff", 300)} {
		got, cut := bound(s, 256)
		if cut != (len(s) > 256) || len(got) > 256 || !cut && got != s {
			t.Errorf("bound(%d bytes) = %d bytes, %v", len(s), len(got), cut)
		}
		if cut && !strings.HasPrefix(s, got[:strings.Index(got, "…[truncated")]) {
			t.Errorf("bound(%q) = %q: not a prefix", s, got)
		}
	}
	if got, _ := bound(strings.Repeat("€", 100), 200); !strings.HasPrefix(got, "€") || strings.Count(got, "€")*3 != strings.Index(got, "…") {
		t.Errorf("cut inside a character: %q", got)
	}
}
