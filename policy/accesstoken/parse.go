package accesstoken

import (
	"encoding/base64"
	"strconv"
	"strings"

	"github.com/go-jose/go-jose/v4"

	"github.com/agentauthz/agentauthz/policy/strictjson"
)

// MaxTokenBytes bounds a token: a longer one is refused before it is decoded.
const MaxTokenBytes = 16 << 10

// Bearer reads the token of an Authorization header value, "Bearer <token>" (RFC 6750 §2.1):
// the scheme in any case, one or more spaces, then a b64token and nothing after it.
func Bearer(value string) (string, error) {
	scheme, rest, ok := strings.Cut(value, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", refuse(ReasonMalformed, "the authorization header is not a Bearer credential")
	}
	token := strings.TrimLeft(rest, " ")
	if token == "" {
		return "", refuse(ReasonMalformed, "the Bearer credential is empty")
	}
	// b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
	i := 0
	for i < len(token) && isB64TokenChar(token[i]) {
		i++
	}
	if i == 0 {
		return "", refuse(ReasonMalformed, "the Bearer credential is not a b64token")
	}
	for i < len(token) && token[i] == '=' {
		i++
	}
	if i != len(token) {
		return "", refuse(ReasonMalformed, "the Bearer credential is not a b64token")
	}
	return token, nil
}

func isB64TokenChar(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/'
}

// parsed is a token read but not yet verified: nothing in it is trusted until verify passes.
type parsed struct {
	alg, kid, typ string
	hasTyp        bool
	iss           string
	claims        map[string]any
}

// b64 decodes base64url without padding, refusing non-zero trailing bits: one token has one
// spelling.
var b64 = base64.RawURLEncoding.Strict()

// refusedHeaders are JWS header parameters a token may not carry. jku, jwk, x5u and x5c name
// keys of the token's own choosing (only the issuer's keys verify it); crit demands extensions
// never implemented here; b64 would change what is signed; zip, enc and cty belong to encrypted or
// nested tokens, which are not access tokens.
var refusedHeaders = []string{"crit", "jku", "jwk", "x5u", "x5c", "b64", "zip", "enc", "cty"}

// parse reads a compact JWS: three canonical base64url parts, a header and a claims set of
// strict JSON, the header naming alg and kid, the claims naming iss.
func parse(token string) (*parsed, error) {
	if len(token) > MaxTokenBytes {
		return nil, refuse(ReasonMalformed, "the token is longer than "+strconv.Itoa(MaxTokenBytes)+" bytes")
	}
	parts := 1
	for i := 0; i < len(token); i++ {
		switch c := token[i]; {
		case c == '.':
			parts++
		case 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_':
		default:
			return nil, refuse(ReasonMalformed, "the token is not base64url text")
		}
	}
	if parts == 5 {
		return nil, refuse(ReasonMalformed, "encrypted tokens (JWE) are not accepted")
	}
	if parts != 3 {
		return nil, refuse(ReasonMalformed, "the token is not a compact JWS of three parts")
	}
	h, rest, _ := strings.Cut(token, ".")
	c, s, _ := strings.Cut(rest, ".")
	if h == "" || c == "" || s == "" {
		return nil, refuse(ReasonMalformed, "a part of the token is empty")
	}
	header, err := decodeObject(h, 4, "header")
	if err != nil {
		return nil, err
	}
	if _, err := b64.DecodeString(s); err != nil {
		return nil, refuse(ReasonMalformed, "the signature is not canonical base64url")
	}
	p := &parsed{}
	for _, name := range refusedHeaders {
		if _, ok := header[name]; ok {
			return nil, refuse(ReasonHeader, "header parameter "+name+" is refused")
		}
	}
	var ok bool
	if p.alg, ok = header["alg"].(string); !ok || p.alg == "" {
		return nil, refuse(ReasonMalformed, "the header has no alg")
	}
	if p.kid, ok = header["kid"].(string); !ok || p.kid == "" {
		return nil, refuse(ReasonMalformed, "the header has no kid")
	}
	if t, present := header["typ"]; present {
		if p.typ, ok = t.(string); !ok || p.typ == "" {
			return nil, refuse(ReasonMalformed, "the header's typ is not a type")
		}
		p.hasTyp = true
	}
	if p.claims, err = decodeObject(c, 16, "claims set"); err != nil {
		return nil, err
	}
	if p.iss, ok = p.claims["iss"].(string); !ok || p.iss == "" {
		return nil, refuse(ReasonIssuer, "the token names no issuer")
	}
	return p, nil
}

// decodeObject decodes one base64url part holding a strict JSON object.
func decodeObject(part string, maxDepth int, what string) (map[string]any, error) {
	data, err := b64.DecodeString(part)
	if err != nil {
		return nil, refuse(ReasonMalformed, "the "+what+" is not canonical base64url")
	}
	// data is decoded here and never written to: the values may share it.
	v, err := strictjson.ParseShared(data, maxDepth)
	if err != nil {
		return nil, refuse(ReasonMalformed, "the "+what+" is not strict JSON: "+err.Error())
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, refuse(ReasonMalformed, "the "+what+" is not a JSON object")
	}
	return m, nil
}

// verify checks the token's signature with go-jose, under the one algorithm its header names
// (already checked against the issuer's list and the key).
func verify(token string, alg jose.SignatureAlgorithm, key *Key) error {
	jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{alg})
	if err != nil {
		return refuse(ReasonMalformed, "the token is not a JWS: "+err.Error())
	}
	if len(jws.Signatures) != 1 {
		return refuse(ReasonMalformed, "the token does not carry exactly one signature")
	}
	if _, err := jws.Verify(key.public); err != nil {
		return refuse(ReasonSignature, "the signature does not verify with key "+quote(key.ID))
	}
	return nil
}

// acceptedType reports whether a token's typ is one the issuer's tokens may have.
func acceptedType(types []string, typ string, has bool) bool {
	t := ""
	if has {
		t = NormalizeType(typ)
	}
	for _, a := range types {
		if a == t {
			return true
		}
	}
	return false
}

// NormalizeType is how typ values compare: without case and without an "application/" prefix
// (RFC 7515 §4.1.9).
func NormalizeType(typ string) string {
	t := strings.ToLower(typ)
	return strings.TrimPrefix(t, "application/")
}

// quote quotes a value from a token for a message, cut short: the values are the sender's.
func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return strconv.QuoteToASCII(s)
}
