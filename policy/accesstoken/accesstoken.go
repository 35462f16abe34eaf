// Package accesstoken reads OAuth 2.0 access tokens (JWTs, RFC 9068) sent as bearer tokens
// (RFC 6750) and validates them for one resource: the issuer is one the resource trusts, the
// signature verifies with that issuer's key named by "kid" under an algorithm the issuer is
// allowed, the token is for this resource ("aud") and within its lifetime give or take a bounded
// clock skew. What it yields is the issuer, the subject that names the agent, and the scopes.
//
// It reads one way only, and refuses what parsers could read differently: a token that is not
// exactly three canonical base64url parts, a header or claims set that is not strict JSON
// (duplicate member names included), a header that names keys of its own (jku, jwk, x5u, x5c)
// or critical extensions, claims of the wrong type. Signatures are verified by go-jose with the
// one algorithm the header names, after that algorithm was checked against the issuer's list and
// the key's type. A Validator remembers the tokens it validated, so that a token sent again pays
// for its lifetime and key checks only, not its signature. The package does no I/O: keys come
// from the policy (KeySet) or from a Keys implementation that may fetch them.
package accesstoken

import (
	"context"
	"errors"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Reason says why a token was refused. Each is stable: tests, logs and the agent's problem
// details tell them apart.
type Reason string

// The reasons a token is refused.
const (
	ReasonMalformed       Reason = "malformed"        // not a compact JWS of strict JSON, or a claim of the wrong type
	ReasonHeader          Reason = "header"           // a header parameter that is refused (crit, jku, jwk, x5u, x5c, ...)
	ReasonIssuer          Reason = "issuer"           // an issuer this resource does not trust
	ReasonAlgorithm       Reason = "algorithm"        // an algorithm the issuer is not allowed, or that does not fit the key
	ReasonType            Reason = "type"             // a typ the issuer's tokens are not accepted with
	ReasonUnknownKey      Reason = "unknown_key"      // no key of the issuer has the token's kid
	ReasonKeysUnavailable Reason = "keys_unavailable" // the issuer's keys could not be had: nothing was decided
	ReasonSignature       Reason = "signature"        // the signature does not verify
	ReasonExpired         Reason = "expired"          // past exp
	ReasonNotYetValid     Reason = "not_yet_valid"    // before nbf, or iat in the future
	ReasonAudience        Reason = "audience"         // not for this resource
	ReasonSubject         Reason = "subject"          // no subject claim holding a string
	ReasonScope           Reason = "scope"            // a scope claim that is not a scope list
)

// Error is a refused token. Message is for operators' logs and never holds the token.
type Error struct {
	Reason  Reason
	Message string
	// Err is the underlying failure, for keys_unavailable.
	Err error
}

func (e *Error) Error() string { return "accesstoken: " + string(e.Reason) + ": " + e.Message }

func (e *Error) Unwrap() error { return e.Err }

func refuse(r Reason, msg string) *Error { return &Error{Reason: r, Message: msg} }

// ErrUnknownKey and ErrKeysUnavailable are what a Keys implementation answers when it has no
// key of that id, and when it could not get the issuer's keys at all.
var (
	ErrUnknownKey      = errors.New("accesstoken: no key with this id")
	ErrKeysUnavailable = errors.New("accesstoken: the issuer's keys are unavailable")
)

// Keys finds an issuer's verification key by key id. An implementation that fetches keys must
// bound its wait by ctx, and answer ErrUnknownKey (or an error wrapping it) when the issuer has
// no such key, ErrKeysUnavailable (or an error wrapping it) when it cannot tell.
type Keys interface {
	Key(ctx context.Context, iss *Issuer, kid string) (*Key, error)
}

// PolicyKeys is Keys for the keys a policy holds (Issuer.Keys, from a JWKS file): an issuer whose
// keys are fetched has none here.
type PolicyKeys struct{}

// Key implements Keys.
func (PolicyKeys) Key(_ context.Context, iss *Issuer, kid string) (*Key, error) {
	if iss.Keys == nil {
		return nil, ErrKeysUnavailable
	}
	if k := iss.Keys.Get(kid); k != nil {
		return k, nil
	}
	return nil, ErrUnknownKey
}

// DefaultSkew is the clock skew allowed when an issuer sets none.
const DefaultSkew = 30 * time.Second

// Issuer is one trusted token issuer, compiled when the policy loads. It must not be modified
// once in use.
type Issuer struct {
	// Name is the policy's name for the issuer.
	Name string
	// URL is the issuer identifier, compared exactly with the token's "iss".
	URL string
	// Algorithms are the signature algorithms accepted from it: never none or HMAC.
	Algorithms []jose.SignatureAlgorithm
	// Types are the accepted "typ" header values, lower case without "application/"; "" accepts
	// a token without typ.
	Types []string
	// Skew is the clock skew allowed on exp, nbf and iat.
	Skew time.Duration
	// SubjectClaim names the claim holding the agent's subject; ScopeClaim the scopes.
	SubjectClaim, ScopeClaim string
	// Keys are the issuer's keys when the policy holds them (a JWKS file); nil when they are
	// fetched, from JWKSURL or, when that is empty, from the issuer's metadata.
	Keys    *KeySet
	JWKSURL string
}

// Token is what a validated token says.
type Token struct {
	// Issuer is the issuer that signed it.
	Issuer *Issuer
	// Subject is the value of the issuer's subject claim.
	Subject string
	// Scopes are the scopes it grants, as listed.
	Scopes []string
	// Expiry is its "exp".
	Expiry time.Time
	// Audiences are the resource's audiences its "aud" names (at least one), as the Validator
	// lists them: a host serving several resources tells them apart by these.
	Audiences []string
}

// HasAudience reports whether the token's "aud" names audience, one of its Validator's.
func (t *Token) HasAudience(audience string) bool {
	for _, a := range t.Audiences {
		if a == audience {
			return true
		}
	}
	return false
}

// HasScope reports whether the token grants scope.
func (t *Token) HasScope(scope string) bool {
	for _, s := range t.Scopes {
		if s == scope {
			return true
		}
	}
	return false
}

// Validator validates tokens for one resource. It is safe for concurrent use; what it validates
// is fixed when it is made.
type Validator struct {
	issuers   map[string]*Issuer // by URL
	listed    []*Issuer          // as given
	audiences []string
	// verified are the tokens it validated lately (see verified).
	verified verified
}

// NewValidator returns a Validator accepting tokens from issuers for any of audiences.
func NewValidator(issuers []*Issuer, audiences []string) *Validator {
	v := &Validator{issuers: make(map[string]*Issuer, len(issuers)), listed: issuers, audiences: audiences}
	for _, iss := range issuers {
		v.issuers[iss.URL] = iss
	}
	return v
}

// Issuers are the issuers whose tokens it accepts, as given. They must not be modified.
func (v *Validator) Issuers() []*Issuer { return v.listed }

// Audiences are the resource's identifiers.
func (v *Validator) Audiences() []string { return v.audiences }

// Validate validates a compact JWS access token at time now, with keys found through keys. A
// refused token is an *Error.
func (v *Validator) Validate(ctx context.Context, token string, now time.Time, keys Keys) (Token, error) {
	if tok, ok, err := v.verified.lookup(ctx, token, now, keys); ok {
		return tok, err
	}
	p, err := parse(token)
	if err != nil {
		return Token{}, err
	}
	iss := v.issuers[p.iss]
	if iss == nil {
		return Token{}, refuse(ReasonIssuer, "issuer "+quote(p.iss)+" is not trusted by this resource")
	}
	alg := jose.SignatureAlgorithm(p.alg)
	if !allowed(iss.Algorithms, alg) {
		return Token{}, refuse(ReasonAlgorithm, "algorithm "+quote(p.alg)+" is not accepted from "+iss.Name)
	}
	if !acceptedType(iss.Types, p.typ, p.hasTyp) {
		return Token{}, refuse(ReasonType, "token type "+quote(p.typ)+" is not accepted from "+iss.Name)
	}
	key, err := keys.Key(ctx, iss, p.kid)
	switch {
	case errors.Is(err, ErrUnknownKey):
		return Token{}, refuse(ReasonUnknownKey, "issuer "+iss.Name+" has no key "+quote(p.kid))
	case err != nil:
		return Token{}, &Error{Reason: ReasonKeysUnavailable, Message: "the keys of issuer " + iss.Name + " are unavailable", Err: err}
	}
	if !key.fits(alg) {
		return Token{}, refuse(ReasonAlgorithm, "algorithm "+p.alg+" does not fit key "+quote(p.kid))
	}
	if err := verify(token, alg, key); err != nil {
		return Token{}, err
	}
	// The claims are read only now, from the verified payload (the same bytes parse read).
	tok, notBefore, err := v.claims(p, iss, now)
	if err == nil {
		v.verified.remember(token, tok, notBefore, p.kid, key)
	}
	return tok, err
}

func allowed(algs []jose.SignatureAlgorithm, alg jose.SignatureAlgorithm) bool {
	for _, a := range algs {
		if a == alg {
			return true
		}
	}
	return false
}
