package accesstoken

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/go-jose/go-jose/v4"

	"github.com/agentauthz/agentauthz/policy/strictjson"
)

// MinRSABits is the smallest RSA modulus accepted for verifying signatures.
const MinRSABits = 2048

// maxKeys bounds a key set.
const maxKeys = 100

// Key is one public verification key.
type Key struct {
	// ID is its "kid".
	ID     string
	public crypto.PublicKey // *ecdsa.PublicKey, *rsa.PublicKey or ed25519.PublicKey
	// alg is the algorithm the JWK is restricted to, or empty.
	alg string
}

// NewKey returns a key with id for a public key (*ecdsa.PublicKey, *rsa.PublicKey or
// ed25519.PublicKey), usable with every algorithm its type fits.
func NewKey(id string, public crypto.PublicKey) (*Key, error) {
	k := &Key{ID: id, public: public}
	if err := k.check(); err != nil {
		return nil, err
	}
	return k, nil
}

// check refuses keys no accepted algorithm fits.
func (k *Key) check() error {
	switch pk := k.public.(type) {
	case *ecdsa.PublicKey:
		switch pk.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return fmt.Errorf("key %q: unsupported elliptic curve", k.ID)
		}
	case *rsa.PublicKey:
		if pk.N.BitLen() < MinRSABits {
			return fmt.Errorf("key %q: an RSA key of %d bits is too short (at least %d)", k.ID, pk.N.BitLen(), MinRSABits)
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("key %q: not a public signature key of a supported type", k.ID)
	}
	if k.alg != "" && !k.fits(jose.SignatureAlgorithm(k.alg)) {
		return fmt.Errorf("key %q: its alg %q does not fit its type", k.ID, k.alg)
	}
	return nil
}

// fits reports whether the key verifies signatures of alg: its type and curve are alg's, and
// the JWK's own alg, if any, is alg.
func (k *Key) fits(alg jose.SignatureAlgorithm) bool {
	if k.alg != "" && k.alg != string(alg) {
		return false
	}
	switch pk := k.public.(type) {
	case *ecdsa.PublicKey:
		switch alg {
		case jose.ES256:
			return pk.Curve == elliptic.P256()
		case jose.ES384:
			return pk.Curve == elliptic.P384()
		case jose.ES512:
			return pk.Curve == elliptic.P521()
		}
	case *rsa.PublicKey:
		switch alg {
		case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512:
			return true
		}
	case ed25519.PublicKey:
		return alg == jose.EdDSA
	}
	return false
}

// KeySet is a set of verification keys by key id. It is immutable once made.
type KeySet struct {
	keys map[string]*Key
}

// Get returns the key with id kid, or nil.
func (s *KeySet) Get(kid string) *Key {
	if s == nil {
		return nil
	}
	return s.keys[kid]
}

// Len is how many keys the set holds.
func (s *KeySet) Len() int {
	if s == nil {
		return 0
	}
	return len(s.keys)
}

// NewKeySet returns a set of keys; their ids must be unique.
func NewKeySet(keys ...*Key) (*KeySet, error) {
	s := &KeySet{keys: make(map[string]*Key, len(keys))}
	for _, k := range keys {
		if _, dup := s.keys[k.ID]; dup {
			return nil, fmt.Errorf("accesstoken: two keys have kid %q", k.ID)
		}
		s.keys[k.ID] = k
	}
	return s, nil
}

// ParseKeySet reads a JWKS document (RFC 7517 §5) that a policy names, strictly: strict JSON,
// at least one key, every key a public signature key of a supported type with a unique "kid",
// "use" absent or "sig", and "alg" absent or an accepted algorithm that fits it. A private or
// symmetric key is an error: the file is meant to hold what the issuer publishes.
func ParseKeySet(data []byte) (*KeySet, error) {
	s, skipped, err := parseKeySet(data)
	if err != nil {
		return nil, err
	}
	if len(skipped) > 0 {
		return nil, fmt.Errorf("accesstoken: %s", skipped[0])
	}
	if s.Len() == 0 {
		return nil, fmt.Errorf("accesstoken: the key set holds no keys")
	}
	return s, nil
}

// ParsePublishedKeySet reads a JWKS document an issuer publishes. Keys that cannot verify
// signatures here (encryption keys, other types, symmetric or private ones, keys without a kid)
// are left out and described in skipped; a document that is not strict JSON, or in which two
// keys share a kid, is refused whole: which of the two is meant cannot be told.
func ParsePublishedKeySet(data []byte) (s *KeySet, skipped []string, err error) {
	return parseKeySet(data)
}

func parseKeySet(data []byte) (*KeySet, []string, error) {
	if err := strictjson.Check(data, 8); err != nil {
		return nil, nil, fmt.Errorf("accesstoken: the key set is not strict JSON: %v", err)
	}
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil || doc.Keys == nil {
		return nil, nil, fmt.Errorf("accesstoken: not a JWKS document (an object with a list of keys)")
	}
	if len(doc.Keys) > maxKeys {
		return nil, nil, fmt.Errorf("accesstoken: the key set holds %d keys, more than %d", len(doc.Keys), maxKeys)
	}
	s := &KeySet{keys: make(map[string]*Key, len(doc.Keys))}
	var skipped []string
	for i, raw := range doc.Keys {
		k, why := parseKey(raw)
		if why != "" {
			skipped = append(skipped, "key "+strconv.Itoa(i)+": "+why)
			continue
		}
		if _, dup := s.keys[k.ID]; dup {
			return nil, nil, fmt.Errorf("accesstoken: two keys have kid %q", k.ID)
		}
		s.keys[k.ID] = k
	}
	return s, skipped, nil
}

// parseKey reads one JWK, or says why it cannot verify signatures here.
func parseKey(raw json.RawMessage) (*Key, string) {
	var meta struct {
		Kty string           `json:"kty"`
		Kid string           `json:"kid"`
		Use string           `json:"use"`
		Alg string           `json:"alg"`
		D   *json.RawMessage `json:"d"`
	}
	if err := json.Unmarshal(raw, &meta); err != nil {
		return nil, "not a JWK"
	}
	switch {
	case meta.Kid == "":
		return nil, "no kid"
	case meta.Kty == "oct":
		return nil, "kid " + strconv.Quote(meta.Kid) + " is a symmetric key: only public keys verify tokens"
	case meta.D != nil:
		return nil, "kid " + strconv.Quote(meta.Kid) + " holds a private key: publish only the public key"
	case meta.Use != "" && meta.Use != "sig":
		return nil, "kid " + strconv.Quote(meta.Kid) + " is not a signature key (use " + strconv.Quote(meta.Use) + ")"
	case meta.Alg != "" && !IsAlgorithm(meta.Alg):
		return nil, "kid " + strconv.Quote(meta.Kid) + " is for algorithm " + strconv.Quote(meta.Alg) + ", which is not accepted"
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(raw); err != nil {
		return nil, "kid " + strconv.Quote(meta.Kid) + ": " + err.Error()
	}
	if !jwk.IsPublic() {
		return nil, "kid " + strconv.Quote(meta.Kid) + " is not a public key"
	}
	k := &Key{ID: meta.Kid, public: jwk.Key, alg: meta.Alg}
	if err := k.check(); err != nil {
		return nil, err.Error()
	}
	return k, ""
}

// Algorithms are the signature algorithms an issuer may be allowed: asymmetric only, never
// none or HMAC.
var Algorithms = []jose.SignatureAlgorithm{
	jose.ES256, jose.ES384, jose.ES512,
	jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.EdDSA,
}

// IsAlgorithm reports whether name is one of Algorithms.
func IsAlgorithm(name string) bool {
	return allowed(Algorithms, jose.SignatureAlgorithm(name))
}
