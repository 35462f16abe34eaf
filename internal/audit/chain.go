package audit

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"strconv"
	"time"
)

// newSum is the hash of a chain: HMAC-SHA256 under key, or SHA-256 without one.
func newSum(key []byte) (hash.Hash, bool) {
	if len(key) > 0 {
		return hmac.New(sha256.New, key), true
	}
	return sha256.New(), false
}

// render writes the record into l.line.b with its chain fields and returns its hash.
func (l *Log) render(kind string, t time.Time, attrs []slog.Attr) (h [64]byte, err error) {
	r := slog.NewRecord(t, slog.LevelInfo, kind, 0)
	r.AddAttrs(attrs...)
	if cap(l.line.b) > 64<<10 {
		l.line.b = nil // do not keep one huge record's buffer
	}
	l.line.b = l.line.b[:0]
	if err := l.h.Handle(context.Background(), r); err != nil {
		return h, fmt.Errorf("audit: %w", err)
	}
	b := l.line.b
	if len(b) < 2 || b[len(b)-2] != '}' || b[len(b)-1] != '\n' {
		return h, errors.New("audit: slog wrote an unexpected line")
	}
	l.line.b = b[:len(b)-2]
	return l.seal(), nil
}

// seal appends the chain fields to the record in l.line.b (its fields, without the closing
// brace) and returns its hash.
func (l *Log) seal() (h [64]byte) {
	b := append(l.line.b, seqField...)
	b = strconv.AppendUint(b, l.seq+1, 10)
	b = append(b, prevField...)
	b = append(b, l.head[:]...)
	b = append(b, '"')
	l.sum.Reset()
	l.sum.Write(b)
	hex.Encode(h[:], l.sum.Sum(l.sumBuf[:0]))
	if l.keyed {
		b = append(b, hmacField...)
	} else {
		b = append(b, hashField...)
	}
	b = append(b, h[:]...)
	b = append(b, "\"}\n"...)
	l.line.b = b
	return h
}

// IsHash reports whether s is a hash as the log writes it: 64 lowercase hex digits.
func IsHash[T string | []byte](s T) bool {
	if len(s) != 64 {
		return false
	}
	for i := range len(s) {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
