// Package tokenfile is what the bearer-token files agentauthz reads have in common (the
// approvers file, the AuthZEN PEP tokens file): strict YAML decoding, token hashes written as
// SHA-256 hex, and a lookup that compares every hash in constant time. The files never hold a
// token itself.
package tokenfile

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Hash is a token's SHA-256.
type Hash [sha256.Size]byte

// Decode reads the YAML file at path into v strictly (unknown keys refused). empty says what an
// empty file should hold ("list the approvers under the approvers key").
func Decode(path string, v any, empty string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: the file is empty; %s", path, empty)
	} else if err != nil {
		return fmt.Errorf("%s: %s", path, strings.ReplaceAll(strings.TrimPrefix(err.Error(), "yaml: "), "\n", "; "))
	}
	return nil
}

// ParseHash reads a token_sha256 value: 64 hex digits.
func ParseHash(s string) (Hash, bool) {
	var h Hash
	raw, err := hex.DecodeString(s)
	if err != nil || len(raw) != sha256.Size {
		return h, false
	}
	copy(h[:], raw)
	return h, true
}

// HashProblem is the problem of a token_sha256 value ParseHash refuses.
const HashProblem = "token_sha256 must be 64 hex digits (sha256sum of the token)"

// Set maps token hashes to who holds them. The zero value is empty.
type Set[T any] struct {
	entries []entry[T]
}

type entry[T any] struct {
	hash  Hash
	value T
}

// Add adds the holder of the token whose hash is h.
func (s *Set[T]) Add(h Hash, value T) { s.entries = append(s.entries, entry[T]{h, value}) }

// AddToken adds the holder of token.
func (s *Set[T]) AddToken(token string, value T) { s.Add(sha256.Sum256([]byte(token)), value) }

// Merge adds every entry of other.
func (s *Set[T]) Merge(other *Set[T]) { s.entries = append(s.entries, other.entries...) }

// Len is how many tokens s holds.
func (s *Set[T]) Len() int { return len(s.entries) }

// Lookup returns the holder of token. Every entry is compared, in constant time, so the time
// taken says nothing about which token is close.
func (s *Set[T]) Lookup(token string) (T, bool) {
	sum := sha256.Sum256([]byte(token))
	var found T
	match := 0
	for _, e := range s.entries {
		if subtle.ConstantTimeCompare(sum[:], e.hash[:]) == 1 {
			found, match = e.value, 1
		}
	}
	return found, match == 1
}
