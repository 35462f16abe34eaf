package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// sixRecords writes a log of six records to a real file and returns its lines (each with its
// newline) and head.
func sixRecords(t *testing.T) ([]string, Head) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	l := open(t, path, Options{})
	for i := range 6 {
		if err := l.Decision(Decision{ID: fmt.Sprint("d", i+1), Outcome: "deny", Code: "scope_missing", Status: 403}); err != nil {
			t.Fatal(err)
		}
	}
	head := l.Head()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return readLines(t, path), head
}

// rehash rewrites line's prev and recomputes its hash, as a forger who knows the format would.
func rehash(line, prev string) string {
	body := strings.TrimSuffix(line, "\n")
	body = body[:len(body)-hashLen]
	if prev != "" {
		body = body[:len(body)-prevLen] + prevField + prev + `"`
	}
	sum := sha256.Sum256([]byte(body))
	return body + hashField + hex.EncodeToString(sum[:]) + "\"}\n"
}

func hashOf(line string) string {
	line = strings.TrimSuffix(line, "\n")
	return line[len(line)-hashLen+len(hashField) : len(line)-2]
}

func TestVerifyDetectsTampering(t *testing.T) {
	lines, head := sixRecords(t)
	edit := func(i int, f func(string) string) []string {
		l := slices.Clone(lines)
		l[i] = f(l[i])
		return l
	}
	for _, tc := range []struct {
		name    string
		lines   []string
		line    int
		problem Problem
		detail  string
	}{
		{"first line removed", slices.Delete(slices.Clone(lines), 0, 1), 1, OutOfChain, "its prev is not the genesis hash"},
		{"middle line removed", slices.Delete(slices.Clone(lines), 2, 3), 3, OutOfChain, "its prev is not the hash of line 2"},
		{"last-but-one line removed", slices.Delete(slices.Clone(lines), 4, 5), 5, OutOfChain, "its prev is not the hash of line 4"},
		{"value changed", edit(1, func(s string) string { return strings.Replace(s, `"deny"`, `"allow"`, 1) }), 2, Altered, "its hash does not match its content"},
		{"field added", edit(3, func(s string) string {
			return strings.Replace(s, `"kind":"decision",`, `"kind":"decision","approved":true,`, 1)
		}), 4, Altered, ""},
		{"field removed", edit(3, func(s string) string { return strings.Replace(s, `"status":403,`, "", 1) }), 4, Altered, ""},
		{"time changed", edit(2, func(s string) string { return strings.Replace(s, "12:00:00", "11:00:00", 1) }), 3, Altered, ""},
		{"last line edited", edit(5, func(s string) string { return strings.Replace(s, `"d6"`, `"d7"`, 1) }), 6, Altered, ""},
		{"lines swapped", append(slices.Clone(lines[:1]), append([]string{lines[2], lines[1]}, lines[3:]...)...), 2, OutOfChain, "its prev is not the hash of line 1"},
		{"line duplicated", slices.Insert(slices.Clone(lines), 3, lines[2]), 4, OutOfChain, "a copy of line 3"},
		{"last line truncated", edit(5, func(s string) string { return s[:len(s)/2] }), 6, Truncated, "no newline"},
		{"last newline removed", edit(5, func(s string) string { return strings.TrimSuffix(s, "\n") }), 6, Truncated, ""},
		{"line cut short mid-file", edit(2, func(s string) string { return s[:len(s)/2] + "\n" }), 3, NotJSON, ""},
		{"non-JSON line", slices.Insert(slices.Clone(lines), 2, "rm -rf /\n"), 3, NotJSON, ""},
		{"empty line", slices.Insert(slices.Clone(lines), 2, "\n"), 3, NotJSON, "an empty line"},
		{"CRLF line end", edit(1, func(s string) string { return strings.TrimSuffix(s, "\n") + "\r\n" }), 2, Malformed, `does not end with "seq", "prev" and "hash"`},
		{"JSON that is not a record", slices.Insert(slices.Clone(lines), 2, `{"kind":"decision","outcome":"allow"}`+"\n"), 3, Malformed, ""},
		{"hash in upper case", edit(1, func(s string) string { return strings.Replace(s, hashOf(s), strings.ToUpper(hashOf(s)), 1) }), 2, Malformed, "not 64 lowercase hex"},
		{"forged line, self-consistent, not chained", slices.Insert(slices.Clone(lines), 2, rehash(strings.Replace(lines[2], "deny", "allow", 1), strings.Repeat("ab", 32))), 3, OutOfChain, "its prev is not the hash of line 2"},
		{"forged line chained to the one before", slices.Insert(slices.Clone(lines), 2, rehash(strings.Replace(lines[2], "deny", "allow", 1), hashOf(lines[1]))), 4, OutOfChain, "its prev is not the hash of line 3"},
		{"forged line with a repeated key", edit(1, func(s string) string {
			return rehash(strings.Replace(s, `"outcome":"deny",`, `"outcome":"deny","outcome":"allow",`, 1), "")
		}), 2, Malformed, `the field "outcome" appears twice`},
		{"forged line with an escaped repeated key", edit(1, func(s string) string {
			return rehash(strings.Replace(s, `"outcome":"deny",`, `"outcome":"deny","\u006futcome":"allow",`, 1), "")
		}), 2, Malformed, `the field "outcome" appears twice`},
		{"forged line with a second prev", edit(1, func(s string) string {
			return rehash(strings.Replace(s, `"kind":"decision",`, `"kind":"decision","prev":"`+Genesis+`",`, 1), "")
		}), 2, Malformed, `the field "prev" appears twice`},
		{"forged line without kind", edit(1, func(s string) string { return rehash(strings.Replace(s, `"kind":"decision",`, "", 1), "") }), 2, Malformed, `no "kind"`},
		{"line too long", slices.Insert(slices.Clone(lines), 1, `{"kind":"`+strings.Repeat("a", MaxRecord)+`"}`+"\n"), 2, Malformed, "longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, _, err := Verify(strings.NewReader(strings.Join(tc.lines, "")), VerifyOptions{})
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("Verify: %d records, %v; want line %d: %s", n, err, tc.line, tc.problem)
			}
			if ve.Line != tc.line || ve.Problem != tc.problem || !strings.Contains(ve.Detail, tc.detail) || n != tc.line-1 {
				t.Errorf("Verify: %d records, %v (%s); want line %d: %s %q", n, err, ve.Problem, tc.line, tc.problem, tc.detail)
			}
			if want := fmt.Sprintf("line %d: %s", tc.line, tc.problem); !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error %q does not start with %q", err, want)
			}
		})
	}
	if n, h, err := Verify(strings.NewReader(strings.Join(lines, "")), VerifyOptions{Heads: []Head{head}}); err != nil || n != 6 || h != head.Hash {
		t.Errorf("untouched log: %d records, head %s, %v", n, h, err)
	}
}

// Removing the last record leaves a valid, shorter chain: only a head recorded elsewhere
// reveals it.
func TestVerifyLastLineRemovedNeedsHead(t *testing.T) {
	lines, head := sixRecords(t)
	short := strings.Join(lines[:5], "")
	n, h, err := Verify(strings.NewReader(short), VerifyOptions{})
	if err != nil || n != 5 || h != hashOf(lines[4]) {
		t.Fatalf("without Head: %d records, %v; want 5 and no error (undetectable)", n, err)
	}
	var ve *VerifyError
	for _, known := range []Head{head, {Hash: head.Hash}, {Seq: head.Seq}} {
		_, _, err = Verify(strings.NewReader(short), VerifyOptions{Heads: []Head{known}})
		if !errors.As(err, &ve) || ve.Line != 6 || ve.Problem != HeadMismatch || !strings.Contains(ve.Detail, "removed from the end") {
			t.Errorf("with head %s: %v; want line 6: head mismatch, records removed", known, err)
		}
	}
	// The known head is older than the log: records were appended after it, as they are after
	// every head exported while the log is written.
	older := Head{Seq: 4, Hash: hashOf(lines[3])}
	for _, known := range []Head{older, {Hash: older.Hash}, {Seq: 4}} {
		if _, _, err = Verify(strings.NewReader(strings.Join(lines, "")), VerifyOptions{Heads: []Head{known, head}}); err != nil {
			t.Errorf("older head %s: %v", known, err)
		}
	}
	// A whole chain rewritten from the first line on is consistent: only a head tells.
	forged := make([]string, 6)
	prev := Genesis
	for i, l := range lines {
		forged[i] = rehash(strings.Replace(l, "deny", "allow", 1), prev)
		prev = hashOf(forged[i])
	}
	if _, _, err := Verify(strings.NewReader(strings.Join(forged, "")), VerifyOptions{}); err != nil {
		t.Errorf("rewritten chain without Head: %v", err)
	}
	for _, known := range []Head{head, older, {Hash: head.Hash}} {
		if _, _, err := Verify(strings.NewReader(strings.Join(forged, "")), VerifyOptions{Heads: []Head{known}}); !errors.As(err, &ve) || ve.Problem != HeadMismatch {
			t.Errorf("rewritten chain with head %s: %v", known, err)
		}
	}
	_, _, err = Verify(strings.NewReader(strings.Join(forged, "")), VerifyOptions{Heads: []Head{older}})
	if !errors.As(err, &ve) || ve.Line != 4 || !strings.Contains(ve.Detail, "the record at seq 4 is not the exported head") {
		t.Errorf("rewritten chain with a head at seq 4: %v; want line 4", err)
	}
}

func TestVerifyOptions(t *testing.T) {
	n, h, err := Verify(strings.NewReader(""), VerifyOptions{})
	if n != 0 || h != Genesis || err != nil {
		t.Errorf("empty log: %d, %s, %v", n, h, err)
	}
	from := strings.Repeat("12", 32)
	if _, h, err := Verify(strings.NewReader(""), VerifyOptions{From: Head{Hash: from}, Heads: []Head{{Hash: from}}}); h != from || err != nil {
		t.Errorf("empty log from %s: %s, %v", from, h, err)
	}
	for _, o := range []VerifyOptions{
		{From: Head{Hash: "x"}}, {Heads: []Head{{Hash: strings.Repeat("AB", 32)}}}, {From: Head{Hash: from + "0"}},
		{From: Head{Seq: 3}}, {Heads: []Head{{}}},
	} {
		_, _, err := Verify(strings.NewReader(""), o)
		if ve := (*VerifyError)(nil); err == nil || errors.As(err, &ve) {
			t.Errorf("Verify(%+v): %v, want an option error", o, err)
		}
	}
	var buf bytes.Buffer
	l := New(&buf, Options{From: Head{Seq: 7, Hash: from}, Clock: clock()})
	l.Decision(Decision{ID: "1"})
	for _, start := range []Head{{Hash: from}, {Seq: 7, Hash: from}} {
		if n, _, err := Verify(bytes.NewReader(buf.Bytes()), VerifyOptions{From: start}); n != 1 || err != nil {
			t.Errorf("continued log from %s: %d, %v", start, n, err)
		}
	}
	_, _, err = Verify(bytes.NewReader(buf.Bytes()), VerifyOptions{From: Head{Seq: 6, Hash: from}})
	if err == nil || !strings.Contains(err.Error(), "line 1: out of chain: its seq is 8, not 7") {
		t.Errorf("wrong start seq: %v", err)
	}
	_, _, err = Verify(bytes.NewReader(buf.Bytes()), VerifyOptions{From: Head{Hash: strings.Repeat("34", 32)}})
	if err == nil || !strings.Contains(err.Error(), "line 1: out of chain: its prev is not the start hash 343434343434…") {
		t.Errorf("wrong start: %v", err)
	}
	_, _, err = Verify(bytes.NewReader(buf.Bytes()), VerifyOptions{From: Head{Hash: from}, Heads: []Head{{Seq: 3}}})
	if err == nil || !strings.Contains(err.Error(), "is before the first record checked") {
		t.Errorf("a head before the log: %v", err)
	}
	_, _, err = Verify(iotestErr{}, VerifyOptions{})
	if err == nil || err.Error() != "boom" {
		t.Errorf("read error: %v", err)
	}
}

type iotestErr struct{}

func (iotestErr) Read([]byte) (int, error) { return 0, errors.New("boom") }
