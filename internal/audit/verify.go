package audit

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"slices"
	"strconv"
)

// VerifyOptions say where the chain must start, what it must hold and how it is hashed. The zero
// value checks an unkeyed log that starts a chain, and accepts whatever record it ends with.
type VerifyOptions struct {
	// From is where the first record chains from: the head of the previous file after a
	// rotation. The zero value is the start of a chain (Genesis, sequence 0); a From without a
	// sequence number accepts whatever sequence number the first record has.
	From Head
	// Heads are heads exported earlier, out of the writer's reach: each must be in the chain,
	// unchanged (the record with its sequence number has its hash; a head without a sequence
	// number must be the hash of some record). Without them, records removed from the end of a
	// log cannot be detected. Records after a head are fine: they were written after it.
	Heads []Head
	// Key is the key of a keyed chain: every record must carry the HMAC of its content under it.
	// Without Key, a keyed record is an error (ErrKeyNeeded); with it, so is an unkeyed one.
	Key []byte
}

// ErrKeyNeeded means the log is keyed and VerifyOptions.Key is empty.
var ErrKeyNeeded = errors.New("audit: the log is keyed (hmac): verify it with its key")

// Problem is what is wrong with a line.
type Problem uint8

// The problems Verify reports.
const (
	NotJSON      Problem = iota + 1 // not a JSON value
	Malformed                       // JSON, but not a record: no seq, prev and hash at the end, a repeated key, too long
	Altered                         // its hash (or HMAC) does not match its content
	OutOfChain                      // its prev is not the previous record's hash, or its seq does not follow: a record removed, moved, inserted or duplicated
	Truncated                       // the last line has no newline: an interrupted or cut-short write
	HeadMismatch                    // the log does not hold a head exported earlier (VerifyOptions.Heads)
	Unkeyed                         // a plain hash in a keyed chain: a record written without the key

	keyNeeded Problem = 100 // a keyed record, verified without a key: not a VerifyError
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
	case Unkeyed:
		return "not keyed"
	}
	return fmt.Sprintf("Problem(%d)", p)
}

// VerifyError is a line that breaks the log.
type VerifyError struct {
	Line    int // 1-based, in the file being verified
	Problem Problem
	Detail  string // starts with the problem, e.g. "altered: its hash does not match its content"
}

func (e *VerifyError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Detail) }

// Verify reads a log and checks every line: well-formed JSON, its own hash (or HMAC) matches
// its content, its prev equals the previous line's hash and its seq follows the previous one,
// the first line starts where opts.From says, and every head of opts.Heads is in it. It returns
// the number of records that passed and the hash of the last of them (the start hash if none
// did). The first broken line ends the check with a *VerifyError naming it; a bad option, a
// keyed log without its key (ErrKeyNeeded), a head before the log's first record and the
// reader's own error are returned as they are. A Verifier checks rotated files as one chain.
func Verify(r io.Reader, opts VerifyOptions) (records int, head string, err error) {
	v, err := NewVerifier(opts)
	if err != nil {
		return 0, "", err
	}
	records, err = v.File(r)
	if err == nil {
		err = v.Finish()
	}
	return records, v.Head().hashOrGenesis(), err
}

// Verifier checks one chain across files: the rotated files, oldest first, then the current one.
type Verifier struct {
	opts     VerifyOptions
	mac      hash.Hash // nil: unkeyed
	want     []byte    // the hash the next record must chain from
	seq      uint64    // the sequence number of the last record checked (or of From)
	seqKnown bool
	first    uint64 // the sequence number of the first record checked; 0 before any
	records  int
	files    int
	last     int // records of the last file
	found    []HeadFound
}

// HeadFound says where a head of VerifyOptions.Heads was found.
type HeadFound struct {
	Head Head
	// File is the 1-based number of the File call that found it, Line its line; 0 if not found.
	File, Line int
}

// NewVerifier starts checking a chain.
func NewVerifier(opts VerifyOptions) (*Verifier, error) {
	v := &Verifier{opts: opts, want: []byte(opts.From.hashOrGenesis())}
	if !IsHash(v.want) {
		return nil, fmt.Errorf("audit: the start hash %q is not a SHA-256 hash (64 lowercase hex digits)", opts.From.Hash)
	}
	switch {
	case string(v.want) == Genesis && opts.From.Seq != 0:
		return nil, fmt.Errorf("audit: the genesis hash has sequence number 0, not %d", opts.From.Seq)
	case string(v.want) == Genesis, opts.From.Seq != 0:
		v.seq, v.seqKnown = opts.From.Seq, true
	}
	for _, h := range opts.Heads {
		if h.Hash != "" && !IsHash(h.Hash) {
			return nil, fmt.Errorf("audit: the head hash %q is not a SHA-256 hash (64 lowercase hex digits)", h.Hash)
		}
		if h.Hash == "" && h.Seq == 0 {
			return nil, errors.New("audit: an empty head")
		}
		v.found = append(v.found, HeadFound{Head: h})
	}
	if len(opts.Key) > 0 {
		v.mac = hmac.New(sha256.New, opts.Key)
	}
	return v, nil
}

// Head is the head of the chain checked so far: its last record (or where it started).
func (v *Verifier) Head() Head { return Head{Seq: v.seq, Hash: string(v.want)} }

// Found says where each head of VerifyOptions.Heads was found, in their order.
func (v *Verifier) Found() []HeadFound { return slices.Clone(v.found) }

// File checks the next file of the chain and returns how many of its records passed. A broken
// line is a *VerifyError with the line's number in this file; after one, the chain cannot be
// checked further.
func (v *Verifier) File(r io.Reader) (records int, err error) {
	v.files++
	v.last = 0
	br := bufio.NewReaderSize(r, 64<<10)
	var buf []byte
	for n := 1; ; n++ {
		line, complete, err := readLine(br, &buf)
		if len(line) == 0 && !complete && err == io.EOF {
			break
		}
		bad := func(p Problem, format string, args ...any) (int, error) {
			return records, &VerifyError{Line: n, Problem: p, Detail: describe(p, fmt.Sprintf(format, args...))}
		}
		switch {
		case errors.Is(err, errTooLong) || complete && len(line) >= MaxRecord:
			return bad(Malformed, "longer than %d bytes", MaxRecord)
		case err != nil && err != io.EOF:
			return records, err
		case !complete:
			return bad(Truncated, "the last line has no newline: an interrupted write, or cut short")
		}
		rec, p, detail := checkLine(line, v.mac)
		chainStart := v.records == 0 && v.opts.From.Hash == ""
		switch {
		case p == keyNeeded:
			return records, fmt.Errorf("line %d: %w", n, ErrKeyNeeded)
		case p != 0:
			return bad(p, "%s", detail)
		case v.records > 0 && bytes.Equal(rec.hash, v.want) && n > 1:
			return bad(OutOfChain, "a copy of line %d", n-1)
		case v.records > 0 && bytes.Equal(rec.hash, v.want):
			return bad(OutOfChain, "a copy of the last record of the file before")
		case !bytes.Equal(rec.prev, v.want) && chainStart:
			return bad(OutOfChain, "its prev is not the genesis hash: records before it were removed, or the file continues a rotated one (verify from that file's head)")
		case !bytes.Equal(rec.prev, v.want) && n == 1 && v.records == 0:
			return bad(OutOfChain, "its prev is not the start hash %.12s…: records before it were removed, or it continues another file", v.want)
		case !bytes.Equal(rec.prev, v.want) && n == 1:
			return bad(OutOfChain, "its prev is not the hash of the last record of the file before: records were removed between them, or the files are out of order")
		case !bytes.Equal(rec.prev, v.want):
			return bad(OutOfChain, "its prev is not the hash of line %d: a record was removed, moved or inserted here", n-1)
		case v.seqKnown && rec.seq != v.seq+1:
			return bad(OutOfChain, "its seq is %d, not %d", rec.seq, v.seq+1)
		}
		for i := range v.found {
			f := &v.found[i]
			switch h := f.Head; {
			case f.File != 0:
			case h.Seq == rec.seq && h.Hash != "" && h.Hash != string(rec.hash):
				return bad(HeadMismatch, "the record at seq %d is not the exported head %.12s…: the log was rewritten here or before", h.Seq, h.Hash)
			case h.Seq == rec.seq || h.Seq == 0 && h.Hash == string(rec.hash):
				f.File, f.Line = v.files, n
			}
		}
		v.want = append(v.want[:0], rec.hash...)
		v.seq, v.seqKnown = rec.seq, true
		if v.first == 0 {
			v.first = rec.seq
		}
		records++
		v.records++
		v.last++
	}
	return records, nil
}

// Finish checks, once every file was read, that the chain holds every head of
// VerifyOptions.Heads. A head the chain ends before is a *VerifyError (HeadMismatch) at the line
// after the last file's last record; a head before the first record checked is an error: the
// files that hold it were not given.
func (v *Verifier) Finish() error {
	for _, f := range v.found {
		h := f.Head
		switch {
		case f.File != 0:
		case h.Hash == v.opts.From.hashOrGenesis() && (h.Seq == 0 || h.Seq == v.opts.From.Seq):
			// Where the chain starts: held.
		case h.Seq != 0 && (h.Seq <= v.first || v.first == 0 && h.Seq <= v.seq):
			return fmt.Errorf("audit: the head %s is before the first record checked: give the files that hold it", h)
		case h.Seq != 0:
			return &VerifyError{Line: v.last + 1, Problem: HeadMismatch,
				Detail: fmt.Sprintf("%s: the log ends before the expected head at seq %d, at seq %d: records were removed from the end, or the log was rewritten", HeadMismatch, h.Seq, v.seq)}
		default:
			return &VerifyError{Line: v.last + 1, Problem: HeadMismatch,
				Detail: fmt.Sprintf("%s: the log ends before the expected head %.12s…: records were removed from the end, or the log was rewritten", HeadMismatch, h.Hash)}
		}
	}
	return nil
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
	seqField  = `,"seq":`
	prevField = `,"prev":"`
	hashField = `,"hash":"`
	hmacField = `,"hmac":"`
	prevLen   = len(prevField) + 64 + len(`"`)
	hashLen   = len(hashField) + 64 + len(`"}`)
)

// record is what checkLine reads of a line.
type record struct {
	prev, hash []byte
	seq        uint64
}

// checkLine checks one line on its own: JSON, ending in seq, prev and hash (or hmac, checked
// with mac), the hash matching, keys unique, a kind. It returns what it read, or the problem.
func checkLine(line []byte, mac hash.Hash) (rec record, p Problem, detail string) {
	if len(line) == 0 {
		return rec, NotJSON, "an empty line"
	}
	if !json.Valid(line) {
		return rec, NotJSON, ""
	}
	n := len(line)
	if n < 1+len(seqField)+1+prevLen+hashLen || line[0] != '{' || !bytes.HasSuffix(line, []byte(`"}`)) ||
		!bytes.HasPrefix(line[n-hashLen:], []byte(hashField)) && !bytes.HasPrefix(line[n-hashLen:], []byte(hmacField)) ||
		!bytes.HasPrefix(line[n-hashLen-prevLen:], []byte(prevField)) || line[n-hashLen-1] != '"' {
		return rec, Malformed, `it does not end with "seq", "prev" and "hash"`
	}
	keyed := bytes.HasPrefix(line[n-hashLen:], []byte(hmacField))
	body := line[:n-hashLen]
	rec.prev, rec.hash = body[len(body)-prevLen+len(prevField):len(body)-1], line[n-hashLen+len(hashField):n-2]
	if !IsHash(rec.prev) || !IsHash(rec.hash) {
		return rec, Malformed, "prev or hash is not 64 lowercase hex digits"
	}
	// The seq member is the one right before prev: its digits cannot hold a quote, so the
	// `,"seq":` before them is outside any string, a member of the same object.
	rest := body[:len(body)-prevLen]
	i := bytes.LastIndex(rest, []byte(seqField))
	digits := rest[max(i, 0)+len(seqField):]
	seq, err := strconv.ParseUint(string(digits), 10, 64)
	if i < 0 || err != nil || seq == 0 || digits[0] < '1' || digits[0] > '9' {
		return rec, Malformed, `no "seq" (a number from 1) right before "prev"`
	}
	rec.seq = seq
	var sum [sha256.Size]byte
	switch {
	case keyed && mac == nil:
		return rec, keyNeeded, ""
	case !keyed && mac != nil:
		return rec, Unkeyed, "it carries a plain hash, not the key's HMAC: a record written without the key"
	case keyed:
		mac.Reset()
		mac.Write(body)
		mac.Sum(sum[:0])
	default:
		sum = sha256.Sum256(body)
	}
	var h [64]byte
	hex.Encode(h[:], sum[:])
	if !bytes.Equal(h[:], rec.hash) {
		if keyed {
			return rec, Altered, "its HMAC does not match its content: altered, or not written with this key"
		}
		return rec, Altered, "its hash does not match its content"
	}
	var buf [24][]byte
	keys := topKeys(line, buf[:0])
	kind := false
	for i, k := range keys {
		if slices.ContainsFunc(keys[:i], func(s []byte) bool { return bytes.Equal(s, k) }) {
			return rec, Malformed, fmt.Sprintf("the field %q appears twice", k)
		}
		kind = kind || string(k) == "kind"
	}
	if !kind {
		return rec, Malformed, `no "kind"`
	}
	return rec, 0, ""
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

// tailOf checks the last line of f on its own and returns the head it ends the chain at, and
// f's size: 0 and the zero Head for an empty file. The last record must be keyed under key if
// key is set, and not keyed if not.
func tailOf(f *os.File, key []byte) (Head, int64, error) {
	st, err := f.Stat()
	if err != nil {
		return Head{}, 0, err
	}
	if !st.Mode().IsRegular() {
		return Head{}, 0, errors.New("not a regular file")
	}
	size := st.Size()
	if size == 0 {
		return Head{}, 0, nil
	}
	const advice = `; check it with "agentauthz audit verify"`
	buf := make([]byte, min(size, MaxRecord+1))
	if _, err := f.ReadAt(buf, size-int64(len(buf))); err != nil {
		return Head{}, 0, err
	}
	if buf[len(buf)-1] != '\n' {
		return Head{}, 0, errors.New("cannot append: the last record is truncated (no newline at the end)" + advice)
	}
	line := buf[:len(buf)-1]
	if i := bytes.LastIndexByte(line, '\n'); i >= 0 {
		line = line[i+1:]
	} else if int64(len(buf)) < size {
		return Head{}, 0, fmt.Errorf("cannot append: the last line is longer than %d bytes%s", MaxRecord, advice)
	}
	var mac hash.Hash
	if len(key) > 0 {
		mac = hmac.New(sha256.New, key)
	}
	rec, p, detail := checkLine(line, mac)
	switch p {
	case 0:
		return Head{Seq: rec.seq, Hash: string(rec.hash)}, size, nil
	case keyNeeded:
		return Head{}, 0, errors.New("cannot append: the log is keyed (hmac); open it with its key")
	case Unkeyed:
		return Head{}, 0, errors.New("cannot append keyed records to a log that is not keyed; start the keyed log in a new file")
	}
	return Head{}, 0, fmt.Errorf("cannot append: the last record is corrupt (%s)%s", describe(p, detail), advice)
}
