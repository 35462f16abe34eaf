package authzen

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/agentauthz/agentauthz/internal/tokenfile"
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
	set tokenfile.Set[string] // PEP names
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
	var f tokensFile
	if err := tokenfile.Decode(path, &f, "list the PEPs under the peps key"); err != nil {
		return nil, err
	}
	t := &Tokens{}
	var problems []string
	names := map[string]bool{}
	hashes := map[tokenfile.Hash]string{}
	for i, p := range f.PEPs {
		hash, ok := tokenfile.ParseHash(p.TokenSHA256)
		switch {
		case p.Name == "":
			problems = append(problems, fmt.Sprintf("peps[%d]: name is empty", i))
		case names[p.Name]:
			problems = append(problems, fmt.Sprintf("peps[%d]: %s is listed twice", i, p.Name))
		case !ok:
			problems = append(problems, fmt.Sprintf("peps[%d]: %s", i, tokenfile.HashProblem))
		case hashes[hash] != "":
			problems = append(problems, fmt.Sprintf("peps[%d]: %s has the same token as %s; give each PEP its own", i, p.Name, hashes[hash]))
		default:
			names[p.Name], hashes[hash] = true, p.Name
			t.set.Add(hash, p.Name)
		}
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%s: %s", path, strings.Join(problems, "; "))
	}
	if t.set.Len() == 0 {
		return nil, fmt.Errorf("%s: no PEPs; list them under the peps key", path)
	}
	return t, nil
}

// NewTokens returns the PEP tokens given as token → PEP name (the demo's, and tests').
func NewTokens(tokens map[string]string) *Tokens {
	t := &Tokens{}
	for token, name := range tokens {
		t.set.AddToken(token, name)
	}
	return t
}

// Add returns t with the tokens of other added; either may be nil.
func (t *Tokens) Add(other *Tokens) *Tokens {
	out := &Tokens{}
	if t != nil {
		out.set.Merge(&t.set)
	}
	if other != nil {
		out.set.Merge(&other.set)
	}
	return out
}

// Len is how many PEP tokens t holds.
func (t *Tokens) Len() int {
	if t == nil {
		return 0
	}
	return t.set.Len()
}

// lookup returns the name of token's PEP, comparing it with every entry in constant time.
func (t *Tokens) lookup(token string) (string, bool) {
	if t == nil {
		return "", false
	}
	return t.set.Lookup(token)
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
