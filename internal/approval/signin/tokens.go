// Package signin establishes who an approver is, for the approval API and console: bearer
// tokens from an approvers file (Tokens), OpenID Connect ID tokens (OIDC), and a Chain of them.
// Each is an api.Authenticator.
package signin

import (
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/api"
	"github.com/agentauthz/agentauthz/internal/tokenfile"
)

// Tokens authenticates approvers by bearer token, against SHA-256 hashes of the tokens: the
// approvers file never holds a token itself.
type Tokens struct {
	set tokenfile.Set[approval.Approver]
	// people are the approvers of the file, in its order.
	people []approval.Approver
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

// FileKeys lists every key an approvers file may hold, for the reference (its test checks that
// the reference describes each).
func FileKeys() []string {
	keys := []string{}
	var walk func(t reflect.Type)
	walk = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			keys = append(keys, f.Tag.Get("yaml"))
			if el := f.Type; el.Kind() == reflect.Slice && el.Elem().Kind() == reflect.Struct {
				walk(el.Elem())
			}
		}
	}
	walk(reflect.TypeFor[approversFile]())
	return keys
}

// ReadTokens reads an approvers file strictly, reporting every problem.
func ReadTokens(path string) (*Tokens, error) {
	var f approversFile
	if err := tokenfile.Decode(path, &f, "list the approvers under the approvers key"); err != nil {
		return nil, err
	}
	t := &Tokens{}
	var problems []string
	seen := map[string]bool{}
	hashes := map[tokenfile.Hash]string{} // token hash → the approver it names
	for i, a := range f.Approvers {
		hash, ok := tokenfile.ParseHash(a.TokenSHA256)
		switch {
		case a.Name == "":
			problems = append(problems, fmt.Sprintf("approvers[%d]: name is empty", i))
		case approval.IsWorkload(a.Name):
			problems = append(problems, fmt.Sprintf("approvers[%d]: %s is a workload identity; approvers are people", i, a.Name))
		case seen[a.Name]:
			problems = append(problems, fmt.Sprintf("approvers[%d]: %s is listed twice", i, a.Name))
		case !ok:
			problems = append(problems, fmt.Sprintf("approvers[%d]: %s", i, tokenfile.HashProblem))
		case hashes[hash] != "":
			// One token for two people would make whoever uses it either of them.
			problems = append(problems, fmt.Sprintf("approvers[%d]: %s has the same token as %s; give each approver their own", i, a.Name, hashes[hash]))
		default:
			seen[a.Name], hashes[hash] = true, a.Name
			t.set.Add(hash, approval.Approver{Name: a.Name, Groups: a.Groups})
			t.people = append(t.people, approval.Approver{Name: a.Name, Groups: a.Groups})
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s: %s", path, strings.Join(problems, "; "))
	}
	return t, nil
}

// Approvers lists the approvers an approvers file names, in its order: who can sign in with a
// token (for `agentauthz lint`, which checks that someone may approve each approval rule).
func (t *Tokens) Approvers() []approval.Approver { return t.people }

// NewTokens builds a token authenticator from approvers and their tokens, for the demo.
func NewTokens(entries map[string]approval.Approver) *Tokens {
	t := &Tokens{}
	for token, a := range entries {
		t.set.AddToken(token, a)
	}
	return t
}

// Authenticate implements api.Authenticator, comparing the token with every entry in constant
// time.
func (t *Tokens) Authenticate(r *http.Request) (approval.Approver, error) {
	token, ok := bearer(r)
	if !ok {
		return approval.Approver{}, api.ErrUnauthenticated
	}
	found, ok := t.set.Lookup(token)
	if !ok {
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
