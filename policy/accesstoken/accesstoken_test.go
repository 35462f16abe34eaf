package accesstoken_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/agentauthz/agentauthz/internal/oauthtest"
	"github.com/agentauthz/agentauthz/policy/accesstoken"
)

// fixture is an issuer whose keys the validator holds as a policy's JWKS file would.
type fixture struct {
	iss *oauthtest.Issuer
	cfg *accesstoken.Issuer
	v   *accesstoken.Validator
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	iss := oauthtest.Start(t)
	keys, err := accesstoken.ParseKeySet(iss.JWKS())
	if err != nil {
		t.Fatal(err)
	}
	cfg := &accesstoken.Issuer{
		Name: "corp-idp", URL: iss.URL,
		Algorithms: []jose.SignatureAlgorithm{jose.ES256, jose.RS256},
		Types:      []string{"at+jwt"},
		Skew:       30 * time.Second, SubjectClaim: "client_id", ScopeClaim: "scope",
		Keys: keys,
	}
	return &fixture{iss: iss, cfg: cfg, v: accesstoken.NewValidator([]*accesstoken.Issuer{cfg}, []string{oauthtest.Audience})}
}

func (f *fixture) validate(token string) (accesstoken.Token, error) {
	return f.v.Validate(context.Background(), token, time.Now(), accesstoken.PolicyKeys{})
}

func reason(err error) accesstoken.Reason {
	var e *accesstoken.Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

func TestValidTokens(t *testing.T) {
	f := newFixture(t)
	for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.RS256} {
		tok, err := f.validate(f.iss.Token(t, alg, f.iss.Claims("helpdesk-client", "tickets.read tickets.write")))
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		if tok.Issuer != f.cfg || tok.Subject != "helpdesk-client" || !tok.HasScope("tickets.write") || tok.HasScope("tickets") {
			t.Errorf("%s: %+v", alg, tok)
		}
	}
	c := f.iss.Claims("helpdesk-client", "")
	c["scope"] = []string{"a", "b"}
	c["aud"] = "https://other.example " // a string, not a list; not ours
	if _, err := f.validate(f.iss.Token(t, jose.ES256, c)); reason(err) != accesstoken.ReasonAudience {
		t.Errorf("a single foreign audience: %v", err)
	}
	c["aud"] = oauthtest.Audience
	tok, err := f.validate(f.iss.Token(t, jose.ES256, c))
	if err != nil || len(tok.Scopes) != 2 || !tok.HasScope("b") {
		t.Errorf("aud as a string, scopes as a list: %+v, %v", tok, err)
	}
}

func TestRefusals(t *testing.T) {
	f := newFixture(t)
	es := f.iss.Key(jose.ES256)
	rs := f.iss.Key(jose.RS256)
	now := time.Now()
	claims := func(change func(c map[string]any)) map[string]any {
		c := f.iss.Claims("helpdesk-client", "tickets.read")
		if change != nil {
			change(c)
		}
		return c
	}
	sign := func(header map[string]any, c map[string]any) string { return oauthtest.Sign(t, es, header, c) }
	good := sign(oauthtest.Header("ES256", es.ID), claims(nil))
	parts := strings.Split(good, ".")
	raw := func(header, payload string) string {
		return base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + "." + parts[2]
	}
	withHeader := func(k string, v any) map[string]any {
		h := oauthtest.Header("ES256", es.ID)
		h[k] = v
		return h
	}
	cases := []struct {
		name  string
		token string
		want  accesstoken.Reason
	}{
		{"expired", sign(oauthtest.Header("ES256", es.ID), claims(func(c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() })), accesstoken.ReasonExpired},
		{"not yet valid", sign(oauthtest.Header("ES256", es.ID), claims(func(c map[string]any) { c["nbf"] = now.Add(time.Minute).Unix() })), accesstoken.ReasonNotYetValid},
		{"issued in the future", sign(oauthtest.Header("ES256", es.ID), claims(func(c map[string]any) { c["iat"] = now.Add(time.Hour).Unix() })), accesstoken.ReasonNotYetValid},
		{"no exp", sign(oauthtest.Header("ES256", es.ID), claims(func(c map[string]any) { delete(c, "exp") })), accesstoken.ReasonMalformed},
		{"exp a string", sign(oauthtest.Header("ES256", es.ID), claims(func(c map[string]any) { c["exp"] = "2999-01-01" })), accesstoken.ReasonMalformed},
		{"exp beyond 9999", sign(oauthtest.Header("ES256", es.ID), claims(func(c map[string]any) { c["exp"] = 1e300 })), accesstoken.ReasonMalformed},
		{"wrong audience", sign(oauthtest.Header("ES256", es.ID), claims(func(c map[string]any) { c["aud"] = []string{"https://reports.acme.internal"} })), accesstoken.ReasonAudience},
		{"audience by prefix", sign(oauthtest.Header("ES256", es.ID), claims(func(c map[string]any) { c["aud"] = oauthtest.Audience + "/" })), accesstoken.ReasonAudience},
		{"no audience", sign(oauthtest.Header("ES256", es.ID), claims(func(c map[string]any) { delete(c, "aud") })), accesstoken.ReasonAudience},
		{"wrong issuer", sign(oauthtest.Header("ES256", es.ID), claims(func(c map[string]any) { c["iss"] = "https://idp.evil.example" })), accesstoken.ReasonIssuer},
		{"issuer with a trailing slash", sign(oauthtest.Header("ES256", es.ID), claims(func(c map[string]any) { c["iss"] = f.iss.URL + "/" })), accesstoken.ReasonIssuer},
		{"no issuer", sign(oauthtest.Header("ES256", es.ID), claims(func(c map[string]any) { delete(c, "iss") })), accesstoken.ReasonIssuer},
		{"unknown key", oauthtest.Sign(t, oauthtest.Stranger(t, "es256-99"), oauthtest.Header("ES256", "es256-99"), claims(nil)), accesstoken.ReasonUnknownKey},
		{"a stranger's key under a known kid", oauthtest.Sign(t, oauthtest.Stranger(t, es.ID), oauthtest.Header("ES256", es.ID), claims(nil)), accesstoken.ReasonSignature},
		{"no kid", sign(oauthtest.Header("ES256", ""), claims(nil)), accesstoken.ReasonMalformed},
		{"HS256 keyed with the public JWK", oauthtest.SignHS256(t, oauthtest.PublicJWK(t, es), es.ID, claims(nil)), accesstoken.ReasonAlgorithm},
		{"HS256 keyed with the RSA JWK", oauthtest.SignHS256(t, oauthtest.PublicJWK(t, rs), rs.ID, claims(nil)), accesstoken.ReasonAlgorithm},
		{"alg none", oauthtest.Unsigned(t, es.ID, claims(nil))[0], accesstoken.ReasonMalformed},
		{"alg none with a signature", oauthtest.Unsigned(t, es.ID, claims(nil))[1], accesstoken.ReasonAlgorithm},
		{"RS256 header on the EC key", sign(oauthtest.Header("RS256", es.ID), claims(nil)), accesstoken.ReasonAlgorithm},
		{"ES256 header on the RSA key", oauthtest.Sign(t, rs, oauthtest.Header("ES256", rs.ID), claims(nil)), accesstoken.ReasonAlgorithm},
		{"an algorithm the issuer is not allowed", oauthtest.Sign(t, rs, oauthtest.Header("PS256", rs.ID), claims(nil)), accesstoken.ReasonAlgorithm},
		{"typ JWT", sign(withHeader("typ", "JWT"), claims(nil)), accesstoken.ReasonType},
		{"no typ", sign(func() map[string]any { h := oauthtest.Header("ES256", es.ID); delete(h, "typ"); return h }(), claims(nil)), accesstoken.ReasonType},
		{"an embedded jwk", sign(withHeader("jwk", json.RawMessage(oauthtest.PublicJWK(t, es))), claims(nil)), accesstoken.ReasonHeader},
		{"jku", sign(withHeader("jku", "https://evil.example/jwks"), claims(nil)), accesstoken.ReasonHeader},
		{"crit", sign(withHeader("crit", []string{"exp"}), claims(nil)), accesstoken.ReasonHeader},
		{"b64 false", sign(withHeader("b64", false), claims(nil)), accesstoken.ReasonHeader},
		{"x5c", sign(withHeader("x5c", []string{"MIIB"}), claims(nil)), accesstoken.ReasonHeader},
		{"no subject", sign(oauthtest.Header("ES256", es.ID), claims(func(c map[string]any) { delete(c, "client_id") })), accesstoken.ReasonSubject},
		{"subject a number", sign(oauthtest.Header("ES256", es.ID), claims(func(c map[string]any) { c["client_id"] = 7 })), accesstoken.ReasonSubject},
		{"scope a number", sign(oauthtest.Header("ES256", es.ID), claims(func(c map[string]any) { c["scope"] = 7 })), accesstoken.ReasonScope},
		{"scope with a quote", sign(oauthtest.Header("ES256", es.ID), claims(func(c map[string]any) { c["scope"] = `a "b"` })), accesstoken.ReasonScope},
		{"aud lists a number", sign(oauthtest.Header("ES256", es.ID), claims(func(c map[string]any) { c["aud"] = []any{1, oauthtest.Audience} })), accesstoken.ReasonMalformed},
		{"tampered claims", parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"`+f.iss.URL+`","client_id":"bi-client","aud":"`+oauthtest.Audience+`","exp":9999999999}`)) + "." + parts[2], accesstoken.ReasonSignature},
		{"duplicate claim", raw(`{"alg":"ES256","kid":"`+es.ID+`","typ":"at+jwt"}`, `{"iss":"`+f.iss.URL+`","client_id":"a","client_id":"b"}`), accesstoken.ReasonMalformed},
		{"duplicate header parameter", raw(`{"alg":"ES256","alg":"HS256","kid":"`+es.ID+`"}`, `{}`), accesstoken.ReasonMalformed},
		{"claims not an object", raw(`{"alg":"ES256","kid":"`+es.ID+`","typ":"at+jwt"}`, `["iss"]`), accesstoken.ReasonMalformed},
		{"trailing data after the claims", raw(`{"alg":"ES256","kid":"`+es.ID+`","typ":"at+jwt"}`, `{"iss":"x"} {}`), accesstoken.ReasonMalformed},
		{"two parts", parts[0] + "." + parts[1], accesstoken.ReasonMalformed},
		{"JWE", "a.b.c.d.e", accesstoken.ReasonMalformed},
		{"padding", good + "=", accesstoken.ReasonMalformed},
		{"standard base64", strings.Replace(good, "-", "+", 1) + "+", accesstoken.ReasonMalformed},
		{"a space", parts[0] + ". " + parts[1] + "." + parts[2], accesstoken.ReasonMalformed},
		{"empty signature", parts[0] + "." + parts[1] + ".", accesstoken.ReasonMalformed},
		{"too long", parts[0] + "." + strings.Repeat("A", accesstoken.MaxTokenBytes) + "." + parts[2], accesstoken.ReasonMalformed},
		{"empty", "", accesstoken.ReasonMalformed},
	}
	for _, c := range cases {
		tok, err := f.validate(c.token)
		if err == nil {
			t.Errorf("%s: accepted as %+v", c.name, tok)
			continue
		}
		if got := reason(err); got != c.want {
			t.Errorf("%s: refused as %s (%v), want %s", c.name, got, err, c.want)
		}
		if strings.Contains(err.Error(), parts[2]) {
			t.Errorf("%s: the error quotes the token: %v", c.name, err)
		}
	}
	if _, err := f.validate(good); err != nil {
		t.Fatalf("the unchanged token: %v", err)
	}
}

func TestNonCanonicalSignatureEncoding(t *testing.T) {
	f := newFixture(t)
	good := f.iss.Token(t, jose.ES256, f.iss.Claims("helpdesk-client", ""))
	// 64 signature bytes are 86 base64url characters; the last carries 4 unused bits. Setting
	// one spells the same bytes another way.
	last := good[len(good)-1]
	alphabet := "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, last)
	respelt := good[:len(good)-1] + string(alphabet[i|1])
	if respelt == good {
		respelt = good[:len(good)-1] + string(alphabet[i|2])
	}
	if _, err := f.validate(respelt); reason(err) != accesstoken.ReasonMalformed {
		t.Errorf("a respelt signature: %v", err)
	}
}

func TestClockSkew(t *testing.T) {
	f := newFixture(t)
	c := f.iss.Claims("helpdesk-client", "")
	now := time.Now()
	c["exp"] = now.Add(-10 * time.Second).Unix()
	c["nbf"] = now.Add(10 * time.Second).Unix()
	tok := f.iss.Token(t, jose.ES256, c)
	if _, err := f.validate(tok); err != nil {
		t.Errorf("within the 30s skew: %v", err)
	}
	if _, err := f.v.Validate(context.Background(), tok, now.Add(25*time.Second), accesstoken.PolicyKeys{}); reason(err) != accesstoken.ReasonExpired {
		t.Errorf("35s after exp: %v", err)
	}
	if _, err := f.v.Validate(context.Background(), tok, now.Add(-25*time.Second), accesstoken.PolicyKeys{}); reason(err) != accesstoken.ReasonNotYetValid {
		t.Errorf("35s before nbf: %v", err)
	}
	c["exp"] = float64(now.Unix()) + 0.5 // fractional dates are dates
	delete(c, "nbf")
	delete(c, "iat")
	if _, err := f.v.Validate(context.Background(), f.iss.Token(t, jose.ES256, c), now.Add(-time.Minute), accesstoken.PolicyKeys{}); err != nil {
		t.Errorf("a fractional exp: %v", err)
	}
}

func TestTypes(t *testing.T) {
	f := newFixture(t)
	es := f.iss.Key(jose.ES256)
	f.cfg.Types = []string{"at+jwt", "jwt", ""}
	for _, typ := range []any{"at+jwt", "application/AT+JWT", "JWT", nil} {
		h := oauthtest.Header("ES256", es.ID)
		if typ == nil {
			delete(h, "typ")
		} else {
			h["typ"] = typ
		}
		if _, err := f.validate(oauthtest.Sign(t, es, h, f.iss.Claims("c", ""))); err != nil {
			t.Errorf("typ %v: %v", typ, err)
		}
	}
	for _, typ := range []any{"id+jwt", "", 1} {
		h := oauthtest.Header("ES256", es.ID)
		h["typ"] = typ
		if _, err := f.validate(oauthtest.Sign(t, es, h, f.iss.Claims("c", ""))); err == nil {
			t.Errorf("typ %v accepted", typ)
		}
	}
}

type unavailable struct{}

func (unavailable) Key(context.Context, *accesstoken.Issuer, string) (*accesstoken.Key, error) {
	return nil, accesstoken.ErrKeysUnavailable
}

func TestKeysUnavailable(t *testing.T) {
	f := newFixture(t)
	_, err := f.v.Validate(context.Background(), f.iss.Token(t, jose.ES256, f.iss.Claims("c", "")), time.Now(), unavailable{})
	if reason(err) != accesstoken.ReasonKeysUnavailable || !errors.Is(err, accesstoken.ErrKeysUnavailable) {
		t.Errorf("%v", err)
	}
}

func TestBearer(t *testing.T) {
	for in, want := range map[string]string{
		"Bearer abc.def.ghi":  "abc.def.ghi",
		"bearer abc":          "abc",
		"BEARER   abc==":      "abc==",
		"Bearer a-._~+/b":     "a-._~+/b",
		"Bearer":              "",
		"Bearer ":             "",
		"Basic abc":           "",
		"Bearer abc def":      "",
		"Bearer abc ":         "",
		"Bearer\tabc":         "",
		"Bearer =abc":         "",
		"Bearer ab=c":         "",
		"Bearer abc\x00":      "",
		"Bearerabc":           "",
		"Bearer \"abc\"":      "",
		"Bearer abc,Bearer d": "",
	} {
		got, err := accesstoken.Bearer(in)
		if got != want || (want == "") != (err != nil) {
			t.Errorf("Bearer(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestParseKeySet(t *testing.T) {
	iss := oauthtest.Start(t)
	good := iss.JWKS()
	if s, err := accesstoken.ParseKeySet(good); err != nil || s.Len() != 2 {
		t.Fatalf("%d keys, %v", s.Len(), err)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	jwk := func(k jose.JSONWebKey) string {
		data, err := json.Marshal(k)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	set := func(keys ...string) []byte { return []byte(`{"keys":[` + strings.Join(keys, ",") + `]}`) }
	pub := jwk(jose.JSONWebKey{Key: &ec.PublicKey, KeyID: "k1", Use: "sig"})
	for name, data := range map[string][]byte{
		"a private key":          set(jwk(jose.JSONWebKey{Key: ec, KeyID: "k1"})),
		"a symmetric key":        set(`{"kty":"oct","kid":"k1","k":"c2VjcmV0"}`),
		"no kid":                 set(jwk(jose.JSONWebKey{Key: &ec.PublicKey})),
		"two keys with one kid":  set(pub, pub),
		"an encryption key":      set(jwk(jose.JSONWebKey{Key: &ec.PublicKey, KeyID: "k1", Use: "enc"})),
		"a short RSA key":        set(jwk(jose.JSONWebKey{Key: &small.PublicKey, KeyID: "k1"})),
		"alg HS256":              set(jwk(jose.JSONWebKey{Key: &ec.PublicKey, KeyID: "k1", Algorithm: "HS256"})),
		"alg that does not fit":  set(jwk(jose.JSONWebKey{Key: &ec.PublicKey, KeyID: "k1", Algorithm: "RS256"})),
		"no keys":                set(),
		"not a key set":          []byte(`{"keys":{}}`),
		"duplicate member names": []byte(`{"keys":[],"keys":[` + pub + `]}`),
		"not JSON":               []byte(`keys`),
	} {
		if _, err := accesstoken.ParseKeySet(data); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// What an issuer publishes beside its signature keys is left out, not fatal.
	s, skipped, err := accesstoken.ParsePublishedKeySet(set(pub, `{"kty":"oct","kid":"k2","k":"c2VjcmV0"}`,
		jwk(jose.JSONWebKey{Key: &ec.PublicKey, KeyID: "k3", Use: "enc"}), `{"kty":"OKP","crv":"X448","kid":"k4","x":"AA"}`))
	if err != nil || s.Len() != 1 || s.Get("k1") == nil || len(skipped) != 3 {
		t.Errorf("published set: %d keys, skipped %q, %v", s.Len(), skipped, err)
	}
	if _, _, err := accesstoken.ParsePublishedKeySet(set(pub, pub)); err == nil {
		t.Error("a published set with two keys of one kid was accepted")
	}
}

// keysOf answers one key for every kid, and can be switched to another, or to none.
type keysOf struct{ key *accesstoken.Key }

func (k *keysOf) Key(context.Context, *accesstoken.Issuer, string) (*accesstoken.Key, error) {
	if k.key == nil {
		return nil, accesstoken.ErrUnknownKey
	}
	return k.key, nil
}

// A token validated once is remembered for its bytes and key only: its lifetime is checked on
// every use, and a key replaced or withdrawn under its kid sends it the whole way again.
func TestRememberedTokens(t *testing.T) {
	f := newFixture(t)
	es := f.iss.Key(jose.ES256)
	current, err := accesstoken.NewKey(es.ID, es.Public())
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := accesstoken.NewKey(es.ID, oauthtest.Stranger(t, es.ID).Public())
	if err != nil {
		t.Fatal(err)
	}
	keys := &keysOf{key: current}
	now := time.Now()
	c := f.iss.Claims("helpdesk-client", "tickets.read")
	c["iat"], c["exp"] = now.Unix(), now.Add(5*time.Minute).Unix()
	token := f.iss.Token(t, jose.ES256, c)
	validate := func(at time.Time) (accesstoken.Token, error) {
		return f.v.Validate(context.Background(), token, at, keys)
	}
	for range 3 {
		if tok, err := validate(now); err != nil || tok.Subject != "helpdesk-client" || !tok.HasScope("tickets.read") {
			t.Fatalf("%+v, %v", tok, err)
		}
	}
	if _, err := validate(now.Add(6 * time.Minute)); reason(err) != accesstoken.ReasonExpired {
		t.Errorf("past exp and skew: %v", err)
	}
	if _, err := validate(now); err != nil {
		t.Errorf("back in its lifetime: %v", err)
	}
	if _, err := validate(now.Add(-time.Minute)); reason(err) != accesstoken.ReasonNotYetValid {
		t.Errorf("the clock set back before iat: %v", err)
	}
	if _, err := validate(now); err != nil {
		t.Fatal(err)
	}
	keys.key = stranger // the issuer's kid now names another key
	if _, err := validate(now); reason(err) != accesstoken.ReasonSignature {
		t.Errorf("a replaced key: %v", err)
	}
	keys.key = nil // and then none
	if _, err := validate(now); reason(err) != accesstoken.ReasonUnknownKey {
		t.Errorf("a withdrawn key: %v", err)
	}
	keys.key = current
	if _, err := validate(now); err != nil {
		t.Errorf("the key back: %v", err)
	}
	// Each resource remembers its own: another audience's validator refuses the token.
	other := accesstoken.NewValidator([]*accesstoken.Issuer{f.cfg}, []string{"https://reports.acme.internal"})
	if _, err := other.Validate(context.Background(), token, now, keys); reason(err) != accesstoken.ReasonAudience {
		t.Errorf("another resource: %v", err)
	}
}
