package audit

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestWriteRefusesReservedAndRepeatedKeys(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf, Options{Clock: clock()})
	for _, attrs := range [][]slog.Attr{
		{slog.String("prev", Genesis)},
		{slog.String("hash", Genesis)},
		{slog.String("time", "x")},
		{slog.String("kind", "x")},
		{slog.String("level", "x")},
		{slog.String("msg", "x")},
		{slog.String("a", "1"), slog.Int("a", 2)},
		{slog.Group("", slog.String("prev", Genesis))},
		{slog.Any("", slog.GroupValue(slog.String("hash", "x")))},
		{slog.String("id", "1"), slog.Group("", slog.Group("", slog.String("id", "2")))},
	} {
		if err := l.Write("x", attrs...); err == nil {
			t.Errorf("Write(%v) succeeded", attrs)
		}
	}
	if err := l.Write(""); err == nil {
		t.Error("Write with an empty kind succeeded")
	}
	if buf.Len() != 0 {
		t.Errorf("refused records were written: %q", buf.String())
	}
	// Nested keys may repeat top-level ones; an inlined group's keys are checked and written.
	if err := l.Write("x", slog.String("id", "1"), slog.Group("g", slog.String("id", "2")), slog.Group("", slog.String("k", "v"))); err != nil {
		t.Fatal(err)
	}
	if n, _, err := Verify(&buf, VerifyOptions{}); n != 1 || err != nil {
		t.Errorf("Verify: %d, %v", n, err)
	}
}

// Field values and keys cannot forge the chain's structure: whatever they hold, every record is
// one line, Verify accepts the log, and the values read back as written.
func TestForgingThroughFields(t *testing.T) {
	h := strings.Repeat("a", 64)
	values := []string{
		`","hash":"` + h + `"}`,
		`","prev":"` + h + `","hash":"` + h + `"}` + "\n" + `{"kind":"decision","prev":"` + h + `","hash":"` + h + `"}`,
		"\"}\n{",
		`\",\"hash\":\"` + h + `\"}`,
		"\r\n\u2028\u2029\x00\xff<>&",
		strings.Repeat(`\`, 7) + `"`,
	}
	var buf bytes.Buffer
	l := New(&buf, Options{Clock: clock()})
	for _, v := range values {
		if err := l.Write("approval.requested", slog.String("note", v), slog.String(v, "key"), slog.Any("any", map[string]string{"v": v})); err != nil {
			t.Fatal(err)
		}
		if err := l.Decision(Decision{Path: v, Agent: v, Rule: v}); err != nil {
			t.Fatal(err)
		}
	}
	out := buf.String()
	n, head, err := Verify(strings.NewReader(out), VerifyOptions{Heads: []Head{l.Head()}})
	if err != nil || n != 2*len(values) || head != l.Head().Hash {
		t.Fatalf("Verify: %d records, head %s, %v", n, head, err)
	}
	lines := strings.SplitAfter(out, "\n")
	if len(lines) != 2*len(values)+1 {
		t.Fatalf("%d lines for %d records", len(lines)-1, 2*len(values))
	}
	for i, v := range values {
		v = strings.ToValidUTF8(v, "\uFFFD")
		rec := decode(t, lines[2*i])
		if rec["note"] != v || rec[v] != "key" || rec["any"].(map[string]any)["v"] != v {
			t.Errorf("record %d does not read back: %q", 2*i+1, lines[2*i])
		}
		if decode(t, lines[2*i+1])["path"] != v {
			t.Errorf("record %d does not read back: %q", 2*i+2, lines[2*i+1])
		}
	}
}
