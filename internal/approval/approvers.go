package approval

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Approver is an authenticated person who may decide held requests.
type Approver struct {
	Name   string
	Groups []string
}

// May reports whether the approver is one of approvers ("user:NAME", "group:NAME").
func (p Approver) May(approvers []string) bool {
	for _, a := range approvers {
		if kind, name, _ := strings.Cut(a, ":"); kind == "user" && name == p.Name {
			return true
		} else if kind == "group" {
			for _, g := range p.Groups {
				if g == name {
					return true
				}
			}
		}
	}
	return false
}

// isWorkload reports whether name is a SPIFFE ID (the scheme in any case): a workload, which may
// never approve.
func isWorkload(name string) bool {
	return len(name) >= len("spiffe:") && strings.EqualFold(name[:len("spiffe:")], "spiffe:")
}

// ErrUnauthenticated means the request carries no credential an Authenticator accepts.
var ErrUnauthenticated = errors.New("approval: not authenticated")

// Authenticator establishes who calls the approval API.
type Authenticator interface {
	Authenticate(r *http.Request) (Approver, error)
}

// Tokens authenticates approvers by bearer token, against SHA-256 hashes of the tokens: the
// approvers file never holds a token itself.
type Tokens struct {
	entries []tokenEntry
}

type tokenEntry struct {
	approver Approver
	hash     [sha256.Size]byte
}

var _ Authenticator = (*Tokens)(nil)

// approversFile is the YAML of an approvers file:
//
//	approvers:
//	  - name: alice
//	    groups: [it-admins]
//	    token_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
type approversFile struct {
	Approvers []struct {
		Name        string   `yaml:"name"`
		Groups      []string `yaml:"groups"`
		TokenSHA256 string   `yaml:"token_sha256"`
	} `yaml:"approvers"`
}

// ReadTokens reads an approvers file strictly, reporting every problem.
func ReadTokens(path string) (*Tokens, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f approversFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: the file is empty; list the approvers under approvers:", path)
	} else if err != nil {
		return nil, fmt.Errorf("%s: %s", path, strings.ReplaceAll(strings.TrimPrefix(err.Error(), "yaml: "), "\n", "; "))
	}
	t := &Tokens{}
	var problems []string
	seen := map[string]bool{}
	hashes := map[[sha256.Size]byte]string{} // token hash → the approver it names
	for i, a := range f.Approvers {
		raw, err := hex.DecodeString(a.TokenSHA256)
		var hash [sha256.Size]byte
		copy(hash[:], raw)
		switch {
		case a.Name == "":
			problems = append(problems, fmt.Sprintf("approvers[%d]: name is empty", i))
		case isWorkload(a.Name):
			problems = append(problems, fmt.Sprintf("approvers[%d]: %s is a workload identity; approvers are people", i, a.Name))
		case seen[a.Name]:
			problems = append(problems, fmt.Sprintf("approvers[%d]: %s is listed twice", i, a.Name))
		case err != nil || len(raw) != sha256.Size:
			problems = append(problems, fmt.Sprintf("approvers[%d]: token_sha256 must be 64 hex digits (sha256sum of the token)", i))
		case hashes[hash] != "":
			// One token for two people would make whoever uses it either of them.
			problems = append(problems, fmt.Sprintf("approvers[%d]: %s has the same token as %s; give each approver their own", i, a.Name, hashes[hash]))
		default:
			seen[a.Name], hashes[hash] = true, a.Name
			t.entries = append(t.entries, tokenEntry{approver: Approver{Name: a.Name, Groups: a.Groups}, hash: hash})
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s: %s", path, strings.Join(problems, "; "))
	}
	return t, nil
}

// NewTokens builds a token authenticator from approvers and their tokens, for the demo.
func NewTokens(entries map[string]Approver) *Tokens {
	t := &Tokens{}
	for token, a := range entries {
		t.entries = append(t.entries, tokenEntry{approver: a, hash: sha256.Sum256([]byte(token))})
	}
	return t
}

// Authenticate implements Authenticator. Every entry is compared, in constant time, so the time
// taken says nothing about which token is close.
func (t *Tokens) Authenticate(r *http.Request) (Approver, error) {
	token, ok := bearer(r)
	if !ok {
		return Approver{}, ErrUnauthenticated
	}
	sum := sha256.Sum256([]byte(token))
	var found Approver
	match := 0
	for _, e := range t.entries {
		if subtle.ConstantTimeCompare(sum[:], e.hash[:]) == 1 {
			found, match = e.approver, 1
		}
	}
	if match == 0 {
		return Approver{}, ErrUnauthenticated
	}
	return found, nil
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Values("Authorization")
	if len(h) != 1 {
		return "", false
	}
	scheme, token, ok := strings.Cut(h[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", false
	}
	return token, true
}

// Chain tries each authenticator in turn.
type Chain []Authenticator

// Authenticate implements Authenticator.
func (c Chain) Authenticate(r *http.Request) (Approver, error) {
	for _, a := range c {
		if p, err := a.Authenticate(r); err == nil {
			return p, nil
		} else if !errors.Is(err, ErrUnauthenticated) {
			return Approver{}, err
		}
	}
	return Approver{}, ErrUnauthenticated
}
