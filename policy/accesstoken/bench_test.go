package accesstoken_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/agentauthz/agentauthz/policy/accesstoken"
)

// BenchmarkValidate validates one access token with the issuer's key already at hand (the
// policy's keys, or a fetched key set's cache). ES256 and RS256 are a token's first use, which
// verifies its signature (each iteration on a new Validator, which remembers nothing); "repeated"
// is the same token again, as an agent sends it on request after request, which the Validator
// remembers. The ES256-signature-floor case verifies the token's signature alone, with
// crypto/ecdsa and nothing else: the part no validator can avoid on first use, measured in the
// same run, so that the cost of reading the token and checking its claims shows beside it however
// loaded the machine is.
func BenchmarkValidate(b *testing.B) {
	f := newFixture(b)
	for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.RS256} {
		c := f.iss.Claims("helpdesk-client", "tickets.read tickets.write")
		c["exp"] = time.Now().Add(time.Hour).Unix() // valid however long the benchmark runs
		header := "Bearer " + f.iss.Token(b, alg, c)
		issuers := []*accesstoken.Issuer{f.cfg}
		audiences := f.v.Audiences()
		b.Run(string(alg), func(b *testing.B) {
			ctx, now := context.Background(), time.Now()
			b.ReportAllocs()
			for b.Loop() {
				token, err := accesstoken.Bearer(header)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := accesstoken.NewValidator(issuers, audiences).Validate(ctx, token, now, accesstoken.PolicyKeys{}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(string(alg)+"-repeated", func(b *testing.B) {
			ctx, now := context.Background(), time.Now()
			v := accesstoken.NewValidator(issuers, audiences)
			b.ReportAllocs()
			for b.Loop() {
				token, err := accesstoken.Bearer(header)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := v.Validate(ctx, token, now, accesstoken.PolicyKeys{}); err != nil {
					b.Fatal(err)
				}
			}
		})
		if alg != jose.ES256 {
			continue
		}
		token := strings.TrimPrefix(header, "Bearer ")
		dot := strings.LastIndexByte(token, '.')
		sig, err := base64.RawURLEncoding.DecodeString(token[dot+1:])
		if err != nil {
			b.Fatal(err)
		}
		pub := f.iss.Key(jose.ES256).Public().(*ecdsa.PublicKey)
		r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
		b.Run("ES256-signature-floor", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sum := sha256.Sum256([]byte(token[:dot]))
				if !ecdsa.Verify(pub, sum[:], r, s) {
					b.Fatal("the signature does not verify")
				}
			}
		})
	}
}
