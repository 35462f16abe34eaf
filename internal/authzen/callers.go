package authzen

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
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"go.yaml.in/yaml/v3"
)

// Caller is who asks the AuthZEN API.
type Caller struct {
	// Name names the caller in logs: a PEP's name from the tokens file, or a SPIFFE ID.
	Name string
	// PEP callers (a PEP token, or a client certificate of an allowed PEP) may ask about any
	// subject. Any other caller may ask only about itself.
	PEP bool
	// ID is the SPIFFE ID of a caller that presented a verified client certificate; zero for a
	// token.
	ID spiffeid.ID
}

// Tokens are the PEPs' bearer tokens, held as SHA-256 hashes: the tokens file never holds a
// token itself.
type Tokens struct {
	entries []tokenEntry
}

type tokenEntry struct {
	name string
	hash [sha256.Size]byte
}

// tokensFile is the YAML of a PEP tokens file:
//
//	peps:
//	  - name: orders-gateway
//	    token_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
type tokensFile struct {
	PEPs []struct {
		Name        string `yaml:"name"`
		TokenSHA256 string `yaml:"token_sha256"`
	} `yaml:"peps"`
}

// ReadTokens reads a PEP tokens file strictly, reporting every problem.
func ReadTokens(path string) (*Tokens, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var f tokensFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: the file is empty; list the PEPs under the peps key", path)
	} else if err != nil {
		return nil, fmt.Errorf("%s: %s", path, strings.ReplaceAll(strings.TrimPrefix(err.Error(), "yaml: "), "\n", "; "))
	}
	t := &Tokens{}
	var problems []string
	names := map[string]bool{}
	hashes := map[[sha256.Size]byte]string{}
	for i, p := range f.PEPs {
		raw, err := hex.DecodeString(p.TokenSHA256)
		var hash [sha256.Size]byte
		copy(hash[:], raw)
		switch {
		case p.Name == "":
			problems = append(problems, fmt.Sprintf("peps[%d]: name is empty", i))
		case names[p.Name]:
			problems = append(problems, fmt.Sprintf("peps[%d]: %s is listed twice", i, p.Name))
		case err != nil || len(raw) != sha256.Size:
			problems = append(problems, fmt.Sprintf("peps[%d]: token_sha256 must be 64 hex digits (sha256sum of the token)", i))
		case hashes[hash] != "":
			problems = append(problems, fmt.Sprintf("peps[%d]: %s has the same token as %s; give each PEP its own", i, p.Name, hashes[hash]))
		default:
			names[p.Name], hashes[hash] = true, p.Name
			t.entries = append(t.entries, tokenEntry{name: p.Name, hash: hash})
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s: %s", path, strings.Join(problems, "; "))
	}
	if len(t.entries) == 0 {
		return nil, fmt.Errorf("%s: no PEPs; list them under the peps key", path)
	}
	return t, nil
}

// NewTokens returns the PEP tokens given as token → PEP name (the demo's, and tests').
func NewTokens(tokens map[string]string) *Tokens {
	t := &Tokens{}
	for token, name := range tokens {
		t.entries = append(t.entries, tokenEntry{name: name, hash: sha256.Sum256([]byte(token))})
	}
	return t
}

// Add returns t with the tokens of other added; either may be nil.
func (t *Tokens) Add(other *Tokens) *Tokens {
	out := &Tokens{}
	if t != nil {
		out.entries = append(out.entries, t.entries...)
	}
	if other != nil {
		out.entries = append(out.entries, other.entries...)
	}
	return out
}

// Len is how many PEP tokens t holds.
func (t *Tokens) Len() int {
	if t == nil {
		return 0
	}
	return len(t.entries)
}

// lookup returns the name of token's PEP. Every entry is compared, in constant time, so the
// time taken says nothing about which token is close.
func (t *Tokens) lookup(token string) (string, bool) {
	if t == nil {
		return "", false
	}
	sum := sha256.Sum256([]byte(token))
	name, found := "", false
	for _, e := range t.entries {
		if subtle.ConstantTimeCompare(sum[:], e.hash[:]) == 1 {
			name, found = e.name, true
		}
	}
	return name, found
}

// authenticate establishes the caller: a bearer token of a PEP, or else, on a listener whose TLS
// verifies client certificates, the SPIFFE ID of the certificate. A request with an
// Authorization header is judged by it alone: a wrong token is not rescued by a certificate.
func (h *Handler) authenticate(r *http.Request) (Caller, bool) {
	if auth := r.Header.Values("Authorization"); len(auth) > 0 {
		if len(auth) != 1 {
			return Caller{}, false
		}
		scheme, token, ok := strings.Cut(auth[0], " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
			return Caller{}, false
		}
		name, ok := h.cfg.Tokens.lookup(token)
		return Caller{Name: name, PEP: true}, ok
	}
	if !h.cfg.VerifiedClientCerts || r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return Caller{}, false
	}
	id, err := x509svid.IDFromCert(r.TLS.PeerCertificates[0])
	if err != nil {
		return Caller{}, false
	}
	return Caller{Name: id.String(), ID: id, PEP: slices.Contains(h.cfg.AllowedPEPs, id)}, true
}

// mayAsk reports whether c may ask about subject: a PEP about anyone, any other caller only
// about itself, as an agent.
func (c Caller) mayAsk(subject entity) bool {
	return c.PEP || (!c.ID.IsZero() && subject.typ == SubjectAgent && subject.id == c.ID.String())
}
