// Package signin establishes who an approver is, for the approval API and console: bearer
// tokens from an approvers file (Tokens), OpenID Connect ID tokens (OIDC), and a Chain of them.
// Each is an api.Authenticator.
package signin

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

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/api"
)

// Tokens authenticates approvers by bearer token, against SHA-256 hashes of the tokens: the
// approvers file never holds a token itself.
type Tokens struct {
	entries []tokenEntry
}

type tokenEntry struct {
	approver approval.Approver
	hash     [sha256.Size]byte
}

var _ api.Authenticator = (*Tokens)(nil)

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
		return nil, fmt.Errorf("%s: the file is empty; list the approvers under the approvers key", path)
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
		case approval.IsWorkload(a.Name):
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
			t.entries = append(t.entries, tokenEntry{approver: approval.Approver{Name: a.Name, Groups: a.Groups}, hash: hash})
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s: %s", path, strings.Join(problems, "; "))
	}
	return t, nil
}

// NewTokens builds a token authenticator from approvers and their tokens, for the demo.
func NewTokens(entries map[string]approval.Approver) *Tokens {
	t := &Tokens{}
	for token, a := range entries {
		t.entries = append(t.entries, tokenEntry{approver: a, hash: sha256.Sum256([]byte(token))})
	}
	return t
}

// Authenticate implements api.Authenticator. Every entry is compared, in constant time, so the time
// taken says nothing about which token is close.
func (t *Tokens) Authenticate(r *http.Request) (approval.Approver, error) {
	token, ok := bearer(r)
	if !ok {
		return approval.Approver{}, api.ErrUnauthenticated
	}
	sum := sha256.Sum256([]byte(token))
	var found approval.Approver
	match := 0
	for _, e := range t.entries {
		if subtle.ConstantTimeCompare(sum[:], e.hash[:]) == 1 {
			found, match = e.approver, 1
		}
	}
	if match == 0 {
		return approval.Approver{}, api.ErrUnauthenticated
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
type Chain []api.Authenticator

var _ api.Authenticator = Chain(nil)

// Authenticate implements api.Authenticator.
func (c Chain) Authenticate(r *http.Request) (approval.Approver, error) {
	for _, a := range c {
		if p, err := a.Authenticate(r); err == nil {
			return p, nil
		} else if !errors.Is(err, api.ErrUnauthenticated) {
			return approval.Approver{}, err
		}
	}
	return approval.Approver{}, api.ErrUnauthenticated
}
