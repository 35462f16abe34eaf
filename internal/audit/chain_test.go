package audit

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var testKey = []byte("0123456789abcdef0123456789abcdef-test-key")

// verifyFiles verifies files as one chain, as `agentauthz audit verify` does.
func verifyFiles(files []string, opts VerifyOptions) (int, Head, error) {
	v, err := NewVerifier(opts)
	if err != nil {
		return 0, Head{}, err
	}
	total := 0
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return total, v.Head(), err
		}
		n, err := v.File(f)
		f.Close()
		total += n
		if err != nil {
			return total, v.Head(), fmt.Errorf("%s: %w", filepath.Base(name), err)
		}
	}
	return total, v.Head(), v.Finish()
}

// A keyed chain: each record carries the HMAC of its content under the key. It verifies with the
// key only; without the key no one can alter, add, or rewrite records so that they verify, and
// a chain rewritten as an unkeyed one is refused.
func TestKeyedChain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	l := open(t, path, Options{Key: testKey})
	for i := range 4 {
		if err := l.Decision(Decision{ID: fmt.Sprint("d", i), Outcome: "deny", Code: "scope_missing", Status: 403}); err != nil {
			t.Fatal(err)
		}
	}
	head := l.Head()
	if !l.Keyed() || l.Close() != nil {
		t.Fatal("keyed log")
	}
	lines := readLines(t, path)
	for _, line := range lines {
		if !strings.Contains(line, `,"hmac":"`) || strings.Contains(line, `"hash"`) {
			t.Fatalf("keyed line %q", line)
		}
	}
	if n, h := verifyFile(t, path, VerifyOptions{Key: testKey, Heads: []Head{head}}); n != 4 || h != head.Hash {
		t.Errorf("Verify with the key: %d, %s", n, h)
	}
	all := strings.Join(lines, "")
	if _, _, err := Verify(strings.NewReader(all), VerifyOptions{}); !errors.Is(err, ErrKeyNeeded) {
		t.Errorf("Verify without the key: %v, want ErrKeyNeeded", err)
	}
	var ve *VerifyError
	if _, _, err := Verify(strings.NewReader(all), VerifyOptions{Key: []byte("another key, 32 bytes or more....")}); !errors.As(err, &ve) || ve.Line != 1 || ve.Problem != Altered {
		t.Errorf("Verify with another key: %v", err)
	}
	// A forger without the key: an edited record, rehashed as the format says, keyed or not.
	forged := slices.Clone(lines)
	forged[2] = rehash(strings.Replace(strings.Replace(lines[2], `,"hmac":"`, `,"hash":"`, 1), "deny", "allow", 1), "")
	if _, _, err := Verify(strings.NewReader(strings.Join(forged, "")), VerifyOptions{Key: testKey}); !errors.As(err, &ve) || ve.Line != 3 || ve.Problem != Unkeyed {
		t.Errorf("record rehashed without the key: %v, want line 3 not keyed", err)
	}
	forged[2] = strings.Replace(forged[2], `,"hash":"`, `,"hmac":"`, 1)
	if _, _, err := Verify(strings.NewReader(strings.Join(forged, "")), VerifyOptions{Key: testKey}); !errors.As(err, &ve) || ve.Line != 3 || ve.Problem != Altered {
		t.Errorf("record with a SHA-256 posing as an HMAC: %v, want line 3 altered", err)
	}
	// The whole chain rewritten without the key, self-consistent as an unkeyed chain: it
	// verifies without the key, and not with it.
	rewritten := make([]string, len(lines))
	prev := Genesis
	for i, line := range lines {
		rewritten[i] = rehash(strings.Replace(strings.Replace(line, `,"hmac":"`, `,"hash":"`, 1), "deny", "allow", 1), prev)
		prev = hashOf(rewritten[i])
	}
	if _, _, err := Verify(strings.NewReader(strings.Join(rewritten, "")), VerifyOptions{}); err != nil {
		t.Fatalf("rewritten chain: %v", err)
	}
	if _, _, err := Verify(strings.NewReader(strings.Join(rewritten, "")), VerifyOptions{Key: testKey}); !errors.As(err, &ve) || ve.Line != 1 || ve.Problem != Unkeyed {
		t.Errorf("rewritten chain with the key: %v, want line 1 not keyed", err)
	}

	// Reopened with its key, the chain goes on; without it, or with another, Open refuses, and a
	// keyed log does not continue an unkeyed file.
	l = open(t, path, Options{Key: testKey})
	if l.Head() != head {
		t.Errorf("reopened head %s, want %s", l.Head(), head)
	}
	l.Decision(Decision{ID: "d4"})
	l.Close()
	for name, opts := range map[string]Options{"no key": {}, "another key": {Key: []byte("another key, 32 bytes or more....")}} {
		if l, err := Open(path, opts); err == nil || !strings.Contains(err.Error(), "cannot append") {
			if l != nil {
				l.Close()
			}
			t.Errorf("Open with %s: %v", name, err)
		}
	}
	plain := filepath.Join(t.TempDir(), "plain.log")
	p := open(t, plain, Options{})
	p.Decision(Decision{ID: "x"})
	p.Close()
	if l, err := Open(plain, Options{Key: testKey}); err == nil || !strings.Contains(err.Error(), "not keyed") {
		if l != nil {
			l.Close()
		}
		t.Errorf("keyed Open of an unkeyed log: %v", err)
	}
}

// steppingClock is a clock tests move by hand.
type steppingClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *steppingClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond)
	return c.t
}

func (c *steppingClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// rotatedFiles lists a log's rotated files, oldest first, then the log itself.
func rotatedFiles(t *testing.T, path string) []string {
	t.Helper()
	rotated, err := filepath.Glob(path + ".*")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(rotated)
	return append(rotated, path)
}

// Rotation by size carries the chain across files: each new file starts from the previous one's
// head, the set verifies as one chain against exported heads, keyed too; records cut from the
// end of the last file, or the last file removed, are caught by a head exported earlier.
func TestRotationBySize(t *testing.T) {
	for _, key := range [][]byte{nil, testKey} {
		t.Run(fmt.Sprintf("keyed=%v", key != nil), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "decisions.log")
			obs := &observer{}
			l := open(t, path, Options{Key: key, Rotate: Rotation{Size: 2000}, Observer: obs})
			var heads []Head
			for i := range 40 {
				if err := l.Decision(Decision{ID: fmt.Sprint("d", i), Outcome: "allow", Code: "allowed", Status: 200, Path: "/v1/tickets/4711"}); err != nil {
					t.Fatal(err)
				}
				if i%10 == 9 {
					heads = append(heads, l.Head())
				}
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			files := rotatedFiles(t, path)
			if len(files) < 4 || len(obs.rotated) != len(files)-1 {
				t.Fatalf("%d files, %d rotations observed", len(files), len(obs.rotated))
			}
			prevHead := Head{Hash: Genesis}
			for i, name := range files {
				st, _ := os.Stat(name)
				if st.Size() > 2000 {
					t.Errorf("%s: %d bytes, over the rotation size", name, st.Size())
				}
				lines := readLines(t, name)
				first := decode(t, lines[0])
				if first["prev"] != prevHead.Hash || uint64(first["seq"].(float64)) != prevHead.Seq+1 {
					t.Errorf("%s starts at seq %v from %v, want seq %d from %s", name, first["seq"], first["prev"], prevHead.Seq+1, prevHead.Hash)
				}
				last := decode(t, lines[len(lines)-1])
				prevHead = Head{Seq: uint64(last["seq"].(float64)), Hash: hashOf(lines[len(lines)-1])}
				if i < len(obs.rotated) && (obs.rotated[i] != name || obs.lastRot[i] != prevHead || name != RotatedName(path, prevHead.Seq)) {
					t.Errorf("rotation %d observed as %s at %s; the file is %s ending at %s", i, obs.rotated[i], obs.lastRot[i], name, prevHead)
				}
			}
			n, h, err := verifyFiles(files, VerifyOptions{Key: key, Heads: heads})
			if n != 40 || err != nil || h != heads[len(heads)-1] {
				t.Fatalf("verify the set: %d records, head %s, %v", n, h, err)
			}
			// From the middle: the files after a rotated one, from its head.
			mid := files[2:]
			if _, _, err := verifyFiles(mid, VerifyOptions{Key: key, From: obs.lastRot[1], Heads: heads[2:]}); err != nil {
				t.Errorf("verify from the second rotation: %v", err)
			}
			if _, _, err := verifyFiles(mid, VerifyOptions{Key: key, From: obs.lastRot[1], Heads: heads[:1]}); err == nil || !strings.Contains(err.Error(), "before the first record checked") {
				t.Errorf("a head in a file not given: %v", err)
			}
			// Out of order.
			swapped := slices.Clone(files)
			swapped[1], swapped[2] = swapped[2], swapped[1]
			var ve *VerifyError
			if _, _, err := verifyFiles(swapped, VerifyOptions{Key: key}); !errors.As(err, &ve) || ve.Line != 1 || ve.Problem != OutOfChain {
				t.Errorf("files out of order: %v", err)
			}
			// The last two records cut from the last file: a valid chain, but not against the
			// last exported head.
			lastFile := files[len(files)-1]
			lines := readLines(t, lastFile)
			os.WriteFile(lastFile, []byte(strings.Join(lines[:len(lines)-2], "")), 0o600)
			if _, _, err := verifyFiles(files, VerifyOptions{Key: key}); err != nil {
				t.Errorf("cut set without heads: %v", err)
			}
			if _, _, err := verifyFiles(files, VerifyOptions{Key: key, Heads: heads}); !errors.As(err, &ve) || ve.Problem != HeadMismatch || !strings.Contains(ve.Detail, "removed from the end") {
				t.Errorf("cut set against the heads: %v", err)
			}
			// The last file removed altogether.
			if _, _, err := verifyFiles(files[:len(files)-1], VerifyOptions{Key: key, Heads: heads}); !errors.As(err, &ve) || ve.Problem != HeadMismatch {
				t.Errorf("the last file removed: %v", err)
			}
		})
	}
}

// Rotation by age, and a restart after a rotation whose new file was lost: the chain goes on
// from the newest rotated file.
func TestRotationByAgeAndRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "decisions.log")
	c := &steppingClock{t: time.Date(2026, 9, 1, 12, 0, 0, 0, time.UTC)}
	obs := &observer{}
	l := open(t, path, Options{Clock: c.now, Rotate: Rotation{Every: time.Hour}, Observer: obs})
	write := func(l *Log, id string) {
		t.Helper()
		if err := l.Decision(Decision{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	write(l, "a1")
	write(l, "a2")
	c.add(time.Hour)
	write(l, "b1") // a new file
	write(l, "b2")
	c.add(30 * time.Minute)
	write(l, "b3") // the same file
	c.add(31 * time.Minute)
	write(l, "c1") // a new file
	head := l.Head()
	l.Close()
	files := rotatedFiles(t, path)
	if len(files) != 3 || len(obs.rotated) != 2 {
		t.Fatalf("files %q, rotations %q", files, obs.rotated)
	}
	for i, ids := range [][]string{{"a1", "a2"}, {"b1", "b2", "b3"}, {"c1"}} {
		var got []string
		for _, line := range readLines(t, files[i]) {
			got = append(got, decode(t, line)["id"].(string))
		}
		if !slices.Equal(got, ids) {
			t.Errorf("%s holds %q, want %q", files[i], got, ids)
		}
	}
	// The current file lost (a crash between the rename and the first record, or removed): the
	// next Open continues the chain of the newest rotated file.
	os.Remove(path)
	l = open(t, path, Options{Clock: c.now})
	if want := obs.lastRot[1]; l.Head() != want {
		t.Errorf("head after a restart without the current file: %s, want %s", l.Head(), want)
	}
	write(l, "c1-again")
	l.Close()
	if n, _, err := verifyFiles(rotatedFiles(t, path), VerifyOptions{}); n != 6 || err != nil {
		t.Errorf("verify after the restart: %d, %v", n, err)
	}
	// Against the head exported before the loss: c1 is gone, and the head says so.
	var ve *VerifyError
	if _, _, err := verifyFiles(rotatedFiles(t, path), VerifyOptions{Heads: []Head{head}}); !errors.As(err, &ve) || ve.Problem != HeadMismatch {
		t.Errorf("verify against the lost record's head: %v", err)
	}
}

// A rotation that cannot happen (the rotated name is taken) loses nothing: the record goes to
// the current file, the failure is reported, and the chain stays whole.
func TestRotationFailureKeepsWriting(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "decisions.log")
	obs := &observer{}
	l := open(t, path, Options{Rotate: Rotation{Size: 1}, Observer: obs})
	l.Decision(Decision{ID: "1"})
	if err := os.Mkdir(RotatedName(path, 1), 0o700); err != nil { // in the way
		t.Fatal(err)
	}
	if err := l.Decision(Decision{ID: "2"}); err != nil {
		t.Fatal(err)
	}
	if got := obs.reasons(); !slices.Equal(got, []string{ReasonRotate}) {
		t.Errorf("reasons observed: %q", got)
	}
	l.Decision(Decision{ID: "3"}) // rotates now: the name is free at seq 2
	head := l.Head()
	l.Close()
	files := rotatedFiles(t, path)
	files = slices.DeleteFunc(files, func(f string) bool { st, _ := os.Stat(f); return st.IsDir() })
	if n, _, err := verifyFiles(files, VerifyOptions{Heads: []Head{head}}); n != 3 || err != nil {
		t.Errorf("verify %q: %d, %v", files, n, err)
	}
}

func TestParseHead(t *testing.T) {
	h := strings.Repeat("ab", 32)
	for in, want := range map[string]Head{
		"12:" + h:                  {Seq: 12, Hash: h},
		"12:" + strings.ToUpper(h): {Seq: 12, Hash: h},
		h:                          {Hash: h},
		" 7 ":                      {Seq: 7},
		":" + h:                    {Hash: h},
	} {
		if got, err := ParseHead(in); err != nil || got != want {
			t.Errorf("ParseHead(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "-1", "x:" + h, "12:" + h[:63], "12:", "12:" + h + "0", "1.5"} {
		if got, err := ParseHead(bad); err == nil {
			t.Errorf("ParseHead(%q) = %s", bad, got)
		}
	}
	if s := (Head{Seq: 3, Hash: h}).String(); s != "3:"+h {
		t.Errorf("String() = %q", s)
	}
	if s := (Head{}).String(); s != "0:"+Genesis {
		t.Errorf("zero String() = %q", s)
	}
}

func TestReadKey(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "key")
	os.WriteFile(good, []byte("  "+string(testKey)+"\n"), 0o400)
	if k, err := ReadKey(good); err != nil || !bytes.Equal(k, testKey) {
		t.Errorf("ReadKey = %q, %v", k, err)
	}
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("tooshort\n"), 0o400)
	if _, err := ReadKey(short); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Errorf("short key: %v", err)
	}
	if _, err := ReadKey(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing key file read")
	}
}

// Any single byte of a log changed, removed or added is caught (or leaves the content as it
// was): there is no byte of a record the chain does not cover.
func TestEveryByteIsCovered(t *testing.T) {
	for _, key := range [][]byte{nil, testKey} {
		var buf bytes.Buffer
		l := New(&buf, Options{Clock: clock(), Key: key})
		l.Decision(Decision{ID: "d1", Path: "/v1/x?a=1", Outcome: "allow", Status: 200})
		l.Write("approval.requested", testAttrs()...)
		l.Decision(Decision{ID: "d3", Outcome: "deny", Code: "scope_missing", Status: 403})
		data := buf.Bytes()
		opts := VerifyOptions{Key: key, Heads: []Head{l.Head()}}
		if _, _, err := Verify(bytes.NewReader(data), opts); err != nil {
			t.Fatal(err)
		}
		for i := range data {
			for _, edit := range [][]byte{
				slices.Concat(data[:i], []byte{data[i] ^ 0x01}, data[i+1:]),
				slices.Concat(data[:i], data[i+1:]),
				slices.Concat(data[:i], []byte{' '}, data[i:]),
			} {
				if _, _, err := Verify(bytes.NewReader(edit), opts); err == nil && !bytes.Equal(edit, data) {
					t.Fatalf("an edit at byte %d (%q) verifies", i, data[max(0, i-10):min(len(data), i+10)])
				}
			}
		}
	}
}

func testAttrs() []slog.Attr {
	return []slog.Attr{slog.String("approval_id", "apr_1"), slog.Group("request", slog.Int("n", 1), slog.String("path", "/v1/x"))}
}

// FuzzVerify: Verify reads any bytes without panicking, and whatever it accepts is a log whose
// every line is a JSON object with a kind, a seq following the one before, and a hash.
func FuzzVerify(f *testing.F) {
	var buf bytes.Buffer
	l := New(&buf, Options{Clock: clock()})
	l.Decision(Decision{ID: "d1", Outcome: "allow"})
	l.Write("approval.requested", testAttrs()...)
	f.Add(buf.Bytes())
	f.Add([]byte(`{"kind":"x","seq":1,"prev":"` + Genesis + `","hash":"` + Genesis + `"}` + "\n"))
	f.Add([]byte("{}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		n, head, err := Verify(bytes.NewReader(data), VerifyOptions{})
		if err != nil {
			return
		}
		lines := bytes.SplitAfter(data, []byte("\n"))
		if len(lines[len(lines)-1]) == 0 {
			lines = lines[:len(lines)-1]
		}
		if n != len(lines) || !IsHash(head) {
			t.Fatalf("accepted %d records of %d lines, head %q", n, len(lines), head)
		}
		for i, line := range lines {
			rec, p, _ := checkLine(bytes.TrimSuffix(line, []byte("\n")), nil)
			if p != 0 || rec.seq != uint64(i+1) {
				t.Fatalf("accepted line %d: %q (problem %v, seq %d)", i+1, line, p, rec.seq)
			}
		}
	})
}
