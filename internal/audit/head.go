package audit

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Head is where a chain stands: the sequence number of its last record (the first record of a
// chain is 1; 0 before any) and that record's hash (Genesis before any). Export it out of the
// log writer's reach (Log.Head); VerifyOptions.Heads checks a log against heads exported earlier.
type Head struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// String is the head as `agentauthz audit verify --head` takes it: SEQ:HASH.
func (h Head) String() string { return strconv.FormatUint(h.Seq, 10) + ":" + h.hashOrGenesis() }

func (h Head) hashOrGenesis() string {
	if h.Hash == "" {
		return Genesis
	}
	return h.Hash
}

// ParseHead reads a head: SEQ:HASH as Head.String writes it, a bare HASH (its sequence number
// unknown, Seq 0) or a bare SEQ (its hash unknown, Hash ""). Hex digits may be upper case.
func ParseHead(s string) (Head, error) {
	s = strings.TrimSpace(s)
	seqText, hash, hasColon := strings.Cut(s, ":")
	if !hasColon {
		if IsHash(strings.ToLower(s)) {
			return Head{Hash: strings.ToLower(s)}, nil
		}
		seqText, hash = s, ""
	}
	var h Head
	if seqText != "" || !hasColon {
		seq, err := strconv.ParseUint(seqText, 10, 64)
		if err != nil || seq == 0 {
			return Head{}, fmt.Errorf("audit: %q is not a head: want SEQ:HASH, a SHA-256 hash (64 hex digits) or a sequence number from 1", s)
		}
		h.Seq = seq
	}
	if hasColon {
		h.Hash = strings.ToLower(hash)
		if !IsHash(h.Hash) {
			return Head{}, fmt.Errorf("audit: %q is not a head: the hash after %q is not 64 hex digits", s, seqText+":")
		}
	}
	return h, nil
}

// MinKey is the shortest key ReadKey accepts, in bytes.
const MinKey = 32

// ReadKey reads a key for a keyed chain (Options.Key, VerifyOptions.Key) from a file: its bytes,
// without surrounding white space, at least MinKey of them (e.g. the output of
// `head -c 32 /dev/urandom | base64`).
func ReadKey(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("audit: key: %w", err)
	}
	key := bytes.TrimSpace(data)
	if len(key) < MinKey {
		return nil, fmt.Errorf("audit: key %s holds %d bytes; a key is at least %d (e.g. head -c 32 /dev/urandom | base64 > %s)", path, len(key), MinKey, path)
	}
	return key, nil
}

// The reasons a record is not written, as WriteError.Reason (and the decision log failures
// metric) gives them.
const (
	// ReasonWrite: the file could not be written. The log stops: this record and every later
	// one are lost until the log is opened again.
	ReasonWrite = "write"
	// ReasonSync: the file could not be fsynced; the log stops as for ReasonWrite.
	ReasonSync = "sync"
	// ReasonStopped: refused because an earlier write or fsync failed.
	ReasonStopped = "stopped"
	// ReasonClosed: the log (or its queue) was closed.
	ReasonClosed = "closed"
	// ReasonInvalid: the event cannot be a record (an empty kind, a reserved or repeated key,
	// a value that cannot be encoded): a bug in the caller.
	ReasonInvalid = "invalid"
	// ReasonClock: the clock gave a time a record cannot carry.
	ReasonClock = "clock"
	// ReasonFull: the queue in front of the log was full (its writer blocked, or slower than
	// the records arrive), and the record was dropped rather than waited for.
	ReasonFull = "full"
	// ReasonRotate: a rotation failed. No record is lost: the log keeps writing to its file and
	// tries again at the next record.
	ReasonRotate = "rotate"
)

// Reasons lists every WriteError reason.
var Reasons = []string{ReasonWrite, ReasonSync, ReasonStopped, ReasonClosed, ReasonInvalid, ReasonClock, ReasonFull, ReasonRotate}

// WriteError is a record the log did not write, or a rotation that failed.
type WriteError struct {
	Reason string // one of the Reason constants
	Kind   string // the record's kind
	Err    error
}

func (e *WriteError) Error() string { return e.Err.Error() }
func (e *WriteError) Unwrap() error { return e.Err }

// ReasonOf is the reason of a WriteError in err's chain, or ReasonInvalid for any other error.
func ReasonOf(err error) string {
	if we, ok := errors.AsType[*WriteError](err); ok {
		return we.Reason
	}
	return ReasonInvalid
}
