package accesstoken

import (
	"context"
	"strings"
	"sync"
	"time"
)

// MaxVerified bounds how many validated tokens one Validator remembers.
const MaxVerified = 1024

// verified remembers tokens a Validator validated, so that an agent sending the same token on
// request after request pays for its signature once. What does not change with time is reused:
// the signature, issuer, algorithm, type, audience, subject and scopes, all functions of the
// token's bytes and the key that verified it. What does is checked again on every use: the
// lifetime (exp, nbf and iat), against the clock, and the key, which must still be the one the issuer's keys answer
// for the token's kid (a key withdrawn or replaced makes the token go the whole way again). Only
// tokens that passed every check are remembered; a refused one never is.
type verified struct {
	mu      sync.Mutex
	entries map[string]*verifiedToken
}

type verifiedToken struct {
	tok Token
	// notBefore is the later of the token's nbf and iat: a clock set back before it sends the
	// token the whole way again.
	notBefore time.Time
	kid       string
	key       *Key
}

// lookup returns the remembered validation of token, if it still holds at now with keys; ok is
// false when the token must be validated the whole way.
func (c *verified) lookup(ctx context.Context, token string, now time.Time, keys Keys) (Token, bool, error) {
	c.mu.Lock()
	e := c.entries[token]
	c.mu.Unlock()
	if e == nil {
		return Token{}, false, nil
	}
	iss := e.tok.Issuer
	if !now.Before(e.tok.Expiry.Add(iss.Skew)) {
		c.forget(token)
		return Token{}, true, refuse(ReasonExpired, "the token expired at "+e.tok.Expiry.UTC().Format(time.RFC3339))
	}
	if now.Add(iss.Skew).Before(e.notBefore) {
		c.forget(token)
		return Token{}, false, nil
	}
	if k, err := keys.Key(ctx, iss, e.kid); err != nil || k != e.key {
		c.forget(token)
		return Token{}, false, nil
	}
	return e.tok, true, nil
}

// remember records a token that passed every check, forgetting another when full.
func (c *verified) remember(token string, tok Token, notBefore time.Time, kid string, key *Key) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = make(map[string]*verifiedToken)
	}
	if len(c.entries) >= MaxVerified {
		for k := range c.entries { // map order: an arbitrary entry
			delete(c.entries, k)
			break
		}
	}
	// The token may be a view of the request's memory: the copy is all the map keeps.
	c.entries[strings.Clone(token)] = &verifiedToken{tok: tok, notBefore: notBefore, kid: kid, key: key}
}

func (c *verified) forget(token string) {
	c.mu.Lock()
	delete(c.entries, token)
	c.mu.Unlock()
}
