package policytest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/agentauthz/agentauthz/policy"
	"github.com/agentauthz/agentauthz/policy/accesstoken"
)

// Claims turns the claims of an access token, as a test case or `agentauthz check --claims`
// writes them, into a token that the offline engine validates exactly as the server validates
// any: the issuer must be one the host trusts, the algorithm one that issuer is allowed, the type
// one it is accepted with, the audience the host's, the token within its lifetime, its subject
// mapped to an agent, its scopes those the route needs.
//
// Only the signature is made here: with a key generated for this run, under a key id of its
// own, which this Keys answers for beside the keys it wraps. Nothing else knows that key: it is
// never written anywhere, and the server (`agentauthz serve`) never has it, so claims written in
// a test prove nothing to it.
type Claims struct {
	snap  *policy.Snapshot
	next  accesstoken.Keys
	clock func() time.Time
	// prefix starts the key id of every key made here: random, so that no issuer's kid is one.
	prefix string

	mu   sync.Mutex
	keys map[jose.SignatureAlgorithm]*offlineKey
}

type offlineKey struct {
	id     string
	signer crypto.Signer
	key    *accesstoken.Key
}

var _ accesstoken.Keys = (*Claims)(nil)

// NewClaims returns a Claims for the issuers of snap, answering other key ids from next (nil:
// the policy's keys only).
func NewClaims(snap *policy.Snapshot, next accesstoken.Keys) *Claims {
	if next == nil {
		next = accesstoken.PolicyKeys{}
	}
	var r [8]byte
	_, _ = rand.Read(r[:]) // crypto/rand.Read never fails on supported platforms
	return &Claims{snap: snap, next: next, clock: time.Now, prefix: "agentauthz-offline-" + hex.EncodeToString(r[:]) + "-",
		keys: map[jose.SignatureAlgorithm]*offlineKey{}}
}

// Key implements accesstoken.Keys.
func (c *Claims) Key(ctx context.Context, iss *accesstoken.Issuer, kid string) (*accesstoken.Key, error) {
	if strings.HasPrefix(kid, c.prefix) {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, k := range c.keys {
			if k.id == kid {
				return k.key, nil
			}
		}
		return nil, accesstoken.ErrUnknownKey
	}
	return c.next.Key(ctx, iss, kid)
}

// Token signs claims as an access token. exp, nbf and iat may be written as durations from now
// ("-10m", "1h"); exp defaults to five minutes from now and iat to now. The token is signed with
// the first algorithm the issuer named by iss is allowed, and carries its first accepted type.
func (c *Claims) Token(claims map[string]any) (string, error) {
	now := c.clock()
	out := make(map[string]any, len(claims)+2)
	for k, v := range claims {
		out[k] = v
	}
	for _, name := range []string{"exp", "nbf", "iat"} {
		s, ok := out[name].(string)
		if !ok {
			continue
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return "", fmt.Errorf("claim %s: %q is neither a date (seconds since 1970) nor a duration from now", name, s)
		}
		out[name] = now.Add(d).Unix()
	}
	if _, ok := out["exp"]; !ok {
		out["exp"] = now.Add(5 * time.Minute).Unix()
	}
	if _, ok := out["iat"]; !ok {
		out["iat"] = now.Unix()
	}
	alg, typ := jose.ES256, "at+jwt"
	issuer, _ := out["iss"].(string)
	for _, iss := range c.snap.OAuthIssuers() {
		if iss.URL == issuer {
			alg = iss.Algorithms[0]
			if len(iss.Types) > 0 {
				typ = iss.Types[0]
			}
		}
	}
	payload, err := json.Marshal(out)
	if err != nil {
		return "", fmt.Errorf("claims: %v", err)
	}
	k, err := c.key(alg)
	if err != nil {
		return "", err
	}
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: k.signer, KeyID: k.id}}, opts)
	if err != nil {
		return "", fmt.Errorf("claims: %v", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("claims: %v", err)
	}
	return jws.CompactSerialize()
}

// key returns the key for alg, made on first use.
func (c *Claims) key(alg jose.SignatureAlgorithm) (*offlineKey, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if k := c.keys[alg]; k != nil {
		return k, nil
	}
	var signer crypto.Signer
	var err error
	switch alg {
	case jose.ES256:
		signer, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.ES384:
		signer, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case jose.ES512:
		signer, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512:
		signer, err = rsa.GenerateKey(rand.Reader, 2048)
	case jose.EdDSA:
		_, signer, err = ed25519.GenerateKey(rand.Reader)
	default:
		err = errors.New("no offline key for algorithm " + string(alg))
	}
	if err != nil {
		return nil, fmt.Errorf("claims: %v", err)
	}
	id := c.prefix + strings.ToLower(string(alg))
	key, err := accesstoken.NewKey(id, signer.Public())
	if err != nil {
		return nil, fmt.Errorf("claims: %v", err)
	}
	k := &offlineKey{id: id, signer: signer, key: key}
	c.keys[alg] = k
	return k, nil
}
