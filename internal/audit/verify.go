package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
)

// VerifyOptions say where the chain must start and end. The zero value checks a log that starts
// a chain and accepts whatever record it ends with.
type VerifyOptions struct {
	// From is the hash the first record must chain from: the head of the previous file after a
	// rotation. Empty means Genesis.
	From string
	// Head, if set, is the hash the last record must have: a head recorded elsewhere earlier.
	// Without it, records removed from the end of a log cannot be detected.
	Head string
}

// Problem is what is wrong with a line.
type Problem uint8

// The problems Verify reports.
const (
	NotJSON      Problem = iota + 1 // not a JSON value
	Malformed                       // JSON, but not a record: no prev and hash at the end, a repeated key, too long
	Altered                         // its hash does not match its content
	OutOfChain                      // its prev is not the previous record's hash: a record removed, moved, inserted or duplicated
	Truncated                       // the last line has no newline: an interrupted or cut-short write
	HeadMismatch                    // the log does not end with VerifyOptions.Head
)

func (p Problem) String() string {
	switch p {
	case NotJSON:
		return "not JSON"
	case Malformed:
		return "not a record"
	case Altered:
		return "altered"
	case OutOfChain:
		return "out of chain"
	case Truncated:
		return "truncated"
	case HeadMismatch:
		return "head mismatch"
	}
	return fmt.Sprintf("Problem(%d)", p)
}

// VerifyError is a line that breaks the log.
type VerifyError struct {
	Line    int // 1-based
	Problem Problem
	Detail  string // starts with the problem, e.g. "altered: its hash does not match its content"
}

func (e *VerifyError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Detail) }

// Verify reads a log and checks every line: well-formed JSON, its own hash matches its content,
// its prev equals the previous line's hash, the first line's prev is Genesis (or opts.From), and
// with opts.Head the last line's hash is that head. It returns the number of records that passed
// and the hash of the last of them (the start hash if none did). The first broken line ends the
// check with a *VerifyError naming it; a bad option or the reader's own error is returned as is.
func Verify(r io.Reader, opts VerifyOptions) (records int, head string, err error) {
	want := []byte(Genesis)
	if opts.From != "" {
		if !IsHash(opts.From) {
			return 0, "", fmt.Errorf("audit: the start hash %q is not a SHA-256 hash (64 lowercase hex digits)", opts.From)
		}
		want = []byte(opts.From)
	}
	if opts.Head != "" && !IsHash(opts.Head) {
		return 0, "", fmt.Errorf("audit: the head hash %q is not a SHA-256 hash (64 lowercase hex digits)", opts.Head)
	}
	br := bufio.NewReaderSize(r, 64<<10)
	var buf []byte
	headLine := 0 // the line whose hash is opts.Head
	for n := 1; ; n++ {
		line, complete, err := readLine(br, &buf)
		if len(line) == 0 && !complete && err == io.EOF {
			break
		}
		bad := func(p Problem, format string, args ...any) (int, string, error) {
			return records, string(want), &VerifyError{Line: n, Problem: p, Detail: describe(p, fmt.Sprintf(format, args...))}
		}
		switch {
		case errors.Is(err, errTooLong) || complete && len(line) >= MaxRecord:
			return bad(Malformed, "longer than %d bytes", MaxRecord)
		case err != nil && err != io.EOF:
			return records, string(want), err
		case !complete:
			return bad(Truncated, "the last line has no newline: an interrupted write, or cut short")
		}
		prev, hash, p, detail := checkLine(line)
		switch {
		case p != 0:
			return bad(p, "%s", detail)
		case n > 1 && bytes.Equal(hash, want):
			return bad(OutOfChain, "a copy of line %d", n-1)
		case !bytes.Equal(prev, want) && n == 1 && opts.From == "":
			return bad(OutOfChain, "its prev is not the genesis hash: records before it were removed, or the file continues a rotated one (verify from that file's head)")
		case !bytes.Equal(prev, want) && n == 1:
			return bad(OutOfChain, "its prev is not the start hash %.12s…: records before it were removed, or it continues another file", want)
		case !bytes.Equal(prev, want):
			return bad(OutOfChain, "its prev is not the hash of line %d: a record was removed, moved or inserted here", n-1)
		}
		want = append(want[:0], hash...)
		records++
		if opts.Head != "" && string(hash) == opts.Head {
			headLine = n
		}
	}
	head = string(want)
	switch {
	case opts.Head == "" || head == opts.Head:
		return records, head, nil
	case headLine > 0:
		return records, head, &VerifyError{Line: headLine + 1, Problem: HeadMismatch,
			Detail: fmt.Sprintf("%s: the expected head is line %d, but %d record(s) follow it", HeadMismatch, headLine, records-headLine)}
	default:
		return records, head, &VerifyError{Line: records + 1, Problem: HeadMismatch,
			Detail: fmt.Sprintf("%s: the log ends before the expected head %.12s…: records were removed from the end, or the log was rewritten", HeadMismatch, opts.Head)}
	}
}

// describe is a problem and its detail, as VerifyError.Detail has them.
func describe(p Problem, detail string) string {
	if detail == "" {
		return p.String()
	}
	return p.String() + ": " + detail
}

var errTooLong = errors.New("line too long")

// readLine reads one line without its newline; complete reports whether it had one. The line
// is valid until the next call.
func readLine(br *bufio.Reader, buf *[]byte) (line []byte, complete bool, err error) {
	*buf = (*buf)[:0]
	for {
		frag, err := br.ReadSlice('\n')
		switch {
		case err == nil && len(*buf) == 0:
			return frag[:len(frag)-1], true, nil
		case err == nil:
			*buf = append(*buf, frag...)
			return (*buf)[:len(*buf)-1], true, nil
		case err == bufio.ErrBufferFull:
			if *buf = append(*buf, frag...); len(*buf) > MaxRecord {
				return *buf, false, errTooLong
			}
		default:
			*buf = append(*buf, frag...)
			return *buf, false, err
		}
	}
}

const (
	prevField = `,"prev":"`
	hashField = `,"hash":"`
	prevLen   = len(prevField) + 64 + len(`"`)
	hashLen   = len(hashField) + 64 + len(`"}`)
)

// checkLine checks one line on its own: JSON, ending in prev and hash, hash matching, keys
// unique. It returns prev and hash, or the problem.
func checkLine(line []byte) (prev, hash []byte, p Problem, detail string) {
	if len(line) == 0 {
		return nil, nil, NotJSON, "an empty line"
	}
	if !json.Valid(line) {
		return nil, nil, NotJSON, ""
	}
	n := len(line)
	if n < 1+prevLen+hashLen || line[0] != '{' ||
		!bytes.HasPrefix(line[n-hashLen:], []byte(hashField)) || !bytes.HasSuffix(line, []byte(`"}`)) ||
		!bytes.HasPrefix(line[n-hashLen-prevLen:], []byte(prevField)) || line[n-hashLen-1] != '"' {
		return nil, nil, Malformed, `it does not end with "prev" and "hash"`
	}
	body := line[:n-hashLen]
	prev, hash = body[len(body)-prevLen+len(prevField):len(body)-1], line[n-hashLen+len(hashField):n-2]
	if !IsHash(prev) || !IsHash(hash) {
		return nil, nil, Malformed, "prev or hash is not 64 lowercase hex digits"
	}
	sum := sha256.Sum256(body)
	var h [64]byte
	hex.Encode(h[:], sum[:])
	if !bytes.Equal(h[:], hash) {
		return nil, nil, Altered, "its hash does not match its content"
	}
	var buf [24][]byte
	keys := topKeys(line, buf[:0])
	kind := false
	for i, k := range keys {
		if slices.ContainsFunc(keys[:i], func(s []byte) bool { return bytes.Equal(s, k) }) {
			return nil, nil, Malformed, fmt.Sprintf("the field %q appears twice", k)
		}
		kind = kind || string(k) == "kind"
	}
	if !kind {
		return nil, nil, Malformed, `no "kind"`
	}
	return prev, hash, 0, ""
}

// topKeys appends the keys of the object line, which must be valid JSON, unescaped, to keys.
func topKeys(line []byte, keys [][]byte) [][]byte {
	depth, expectKey := 0, false
	for i := 0; i < len(line); i++ {
		switch c := line[i]; c {
		case '{', '[':
			depth++
			expectKey = c == '{' && depth == 1
		case '}', ']':
			depth--
		case ',':
			expectKey = depth == 1
		case '"':
			start, escaped := i, false
			for i++; line[i] != '"'; i++ {
				if line[i] == '\\' {
					escaped = true
					i++
				}
			}
			switch {
			case !expectKey:
			case !escaped:
				keys = append(keys, line[start+1:i])
			default:
				var k string
				_ = json.Unmarshal(line[start:i+1], &k) // valid JSON: cannot fail
				keys = append(keys, []byte(k))
			}
			expectKey = false
		}
	}
	return keys
}

// tailHash checks the last line of f on its own and returns its hash, or "" for an empty file.
func tailHash(f *os.File) (string, error) {
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", errors.New("not a regular file")
	}
	size := st.Size()
	if size == 0 {
		return "", nil
	}
	const advice = `; check it with "agentauthz audit verify"`
	buf := make([]byte, min(size, MaxRecord+1))
	if _, err := f.ReadAt(buf, size-int64(len(buf))); err != nil {
		return "", err
	}
	if buf[len(buf)-1] != '\n' {
		return "", errors.New("cannot append: the last record is truncated (no newline at the end)" + advice)
	}
	line := buf[:len(buf)-1]
	if i := bytes.LastIndexByte(line, '\n'); i >= 0 {
		line = line[i+1:]
	} else if int64(len(buf)) < size {
		return "", fmt.Errorf("cannot append: the last line is longer than %d bytes%s", MaxRecord, advice)
	}
	_, hash, p, detail := checkLine(line)
	if p != 0 {
		return "", fmt.Errorf("cannot append: the last record is corrupt (%s)%s", describe(p, detail), advice)
	}
	return string(hash), nil
}
