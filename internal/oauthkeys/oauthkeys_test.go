package oauthkeys_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/agentauthz/agentauthz/internal/oauthkeys"
	"github.com/agentauthz/agentauthz/internal/oauthtest"
	"github.com/agentauthz/agentauthz/policy/accesstoken"
)

// clock is a settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// fetches receives the outcome of every fetch, so that tests wait for one instead of sleeping.
type fetches chan bool

func (f fetches) observe(_ string, ok bool) { f <- ok }

func (f fetches) wait(t *testing.T, want bool) {
	t.Helper()
	select {
	case ok := <-f:
		if ok != want {
			t.Fatalf("a fetch succeeded: %v, want %v", ok, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no fetch ended within 10s")
	}
}

func (f fetches) none(t *testing.T) {
	t.Helper()
	select {
	case ok := <-f:
		t.Fatalf("an unexpected fetch (ok %v)", ok)
	default:
	}
}

func newCache(clk *clock) (*oauthkeys.Cache, fetches) {
	f := make(fetches, 100)
	return oauthkeys.New(oauthkeys.Config{Clock: clk.Now, Observe: f.observe}), f
}

func issuerOf(iss *oauthtest.Issuer) *accesstoken.Issuer {
	return &accesstoken.Issuer{Name: "test-idp", URL: iss.URL, Algorithms: []jose.SignatureAlgorithm{jose.ES256, jose.RS256}}
}

func TestDiscoveryAndCache(t *testing.T) {
	iss := oauthtest.Start(t)
	clk := &clock{now: time.Now()}
	c, f := newCache(clk)
	cfg := issuerOf(iss)
	c.Prepare([]*accesstoken.Issuer{cfg})
	f.wait(t, true)
	for range 10 {
		for _, alg := range []jose.SignatureAlgorithm{jose.ES256, jose.RS256} {
			if k, err := c.Key(context.Background(), cfg, iss.Key(alg).ID); err != nil || k.ID != iss.Key(alg).ID {
				t.Fatalf("%s: %v %v", alg, k, err)
			}
		}
	}
	if m, j := iss.MetadataFetches.Load(), iss.JWKSFetches.Load(); m != 1 || j != 1 {
		t.Errorf("metadata fetched %d times, JWKS %d; want once each", m, j)
	}
	f.none(t)
}

func TestRotatedKeyFetchedOnceAndRefreshRateLimited(t *testing.T) {
	iss := oauthtest.Start(t)
	clk := &clock{now: time.Now()}
	c, f := newCache(clk)
	cfg := issuerOf(iss)
	ctx := context.Background()
	if _, err := c.Key(ctx, cfg, iss.Key(jose.ES256).ID); err != nil { // the first lookup fetches
		t.Fatal(err)
	}
	f.wait(t, true)
	clk.Advance(oauthkeys.DefaultMinRefresh + time.Second)
	rotated := iss.Rotate(t, jose.ES256, true)
	var wg sync.WaitGroup
	for range 20 { // concurrent requests with the new key share one fetch
		wg.Go(func() {
			if k, err := c.Key(ctx, cfg, rotated.ID); err != nil || k.ID != rotated.ID {
				t.Errorf("the rotated key: %v %v", k, err)
			}
		})
	}
	wg.Wait()
	f.wait(t, true)
	if n := iss.JWKSFetches.Load(); n != 2 {
		t.Errorf("JWKS fetched %d times, want 2: once at first use, once for the new key", n)
	}
	// A flood of invented key ids right after: refused without a fetch.
	for i := range 200 {
		_, err := c.Key(ctx, cfg, "invented-"+string(rune('a'+i%26)))
		if !errors.Is(err, accesstoken.ErrUnknownKey) {
			t.Fatalf("an invented kid: %v", err)
		}
	}
	f.none(t)
	// The retired key is gone from the set fetched after the rotation.
	if _, err := c.Key(ctx, cfg, "es256-1"); !errors.Is(err, accesstoken.ErrUnknownKey) {
		t.Errorf("the retired key: %v", err)
	}
	// After the interval one unknown kid fetches again, once.
	clk.Advance(oauthkeys.DefaultMinRefresh)
	if _, err := c.Key(ctx, cfg, "invented-again"); !errors.Is(err, accesstoken.ErrUnknownKey) {
		t.Fatalf("%v", err)
	}
	f.wait(t, true)
	if _, err := c.Key(ctx, cfg, "invented-again"); !errors.Is(err, accesstoken.ErrUnknownKey) {
		t.Fatalf("%v", err)
	}
	f.none(t)
	if n := iss.JWKSFetches.Load(); n != 3 {
		t.Errorf("JWKS fetched %d times, want 3", n)
	}
	if n := iss.MetadataFetches.Load(); n != 1 {
		t.Errorf("metadata fetched %d times, want 1", n)
	}
}

func TestWaitBoundedByTheRequest(t *testing.T) {
	iss := oauthtest.Start(t)
	clk := &clock{now: time.Now()}
	c, f := newCache(clk)
	cfg := issuerOf(iss)
	release := iss.Block()
	defer release()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Key(ctx, cfg, iss.Key(jose.ES256).ID)
	if !errors.Is(err, accesstoken.ErrKeysUnavailable) {
		t.Fatalf("a lookup past its deadline: %v", err)
	}
	// The fetch outlives the request that started it and serves the next one.
	release()
	f.wait(t, true)
	if _, err := c.Key(context.Background(), cfg, iss.Key(jose.ES256).ID); err != nil {
		t.Fatal(err)
	}
	if n := iss.JWKSFetches.Load(); n != 1 {
		t.Errorf("JWKS fetched %d times, want 1", n)
	}
}

func TestIssuerDown(t *testing.T) {
	iss := oauthtest.Start(t)
	clk := &clock{now: time.Now()}
	c, f := newCache(clk)
	cfg := issuerOf(iss)
	ctx := context.Background()
	iss.SetDown(true)
	if _, err := c.Key(ctx, cfg, iss.Key(jose.ES256).ID); !errors.Is(err, accesstoken.ErrKeysUnavailable) {
		t.Fatalf("issuer down, no keys: %v", err)
	}
	f.wait(t, false)
	// Within the interval no fetch is tried again.
	if _, err := c.Key(ctx, cfg, iss.Key(jose.ES256).ID); !errors.Is(err, accesstoken.ErrKeysUnavailable) {
		t.Fatalf("%v", err)
	}
	f.none(t)
	iss.SetDown(false)
	clk.Advance(oauthkeys.DefaultMinRefresh)
	if _, err := c.Key(ctx, cfg, iss.Key(jose.ES256).ID); err != nil {
		t.Fatalf("issuer back: %v", err)
	}
	f.wait(t, true)
	// Cached keys keep verifying while the issuer is down, stale or not.
	iss.SetDown(true)
	clk.Advance(oauthkeys.DefaultMaxAge + time.Minute)
	if _, err := c.Key(ctx, cfg, iss.Key(jose.ES256).ID); err != nil {
		t.Fatalf("cached key with the issuer down: %v", err)
	}
	f.wait(t, false) // the background refresh of the stale set
	if _, err := c.Key(ctx, cfg, iss.Key(jose.ES256).ID); err != nil {
		t.Fatalf("cached key after a failed refresh: %v", err)
	}
}

func TestStaleKeysRefreshedInTheBackground(t *testing.T) {
	iss := oauthtest.Start(t)
	clk := &clock{now: time.Now()}
	c, f := newCache(clk)
	cfg := issuerOf(iss)
	ctx := context.Background()
	old := iss.Key(jose.ES256)
	if _, err := c.Key(ctx, cfg, old.ID); err != nil {
		t.Fatal(err)
	}
	f.wait(t, true)
	iss.Rotate(t, jose.ES256, true) // the issuer withdraws the old key
	clk.Advance(oauthkeys.DefaultMaxAge + time.Second)
	if _, err := c.Key(ctx, cfg, old.ID); err != nil { // served from the cache, refreshed behind
		t.Fatal(err)
	}
	f.wait(t, true)
	if _, err := c.Key(ctx, cfg, old.ID); !errors.Is(err, accesstoken.ErrUnknownKey) {
		t.Errorf("a withdrawn key after the refresh: %v", err)
	}
}

func TestExplicitJWKSURLAndPolicyKeys(t *testing.T) {
	iss := oauthtest.Start(t)
	clk := &clock{now: time.Now()}
	c, f := newCache(clk)
	cfg := issuerOf(iss)
	cfg.JWKSURL = iss.URL + "/jwks"
	if _, err := c.Key(context.Background(), cfg, iss.Key(jose.RS256).ID); err != nil {
		t.Fatal(err)
	}
	f.wait(t, true)
	if n := iss.MetadataFetches.Load(); n != 0 {
		t.Errorf("metadata fetched %d times with a jwks_url", n)
	}
	static, err := accesstoken.ParseKeySet(iss.JWKS())
	if err != nil {
		t.Fatal(err)
	}
	file := issuerOf(iss)
	file.Keys = static
	iss.SetDown(true)
	if _, err := c.Key(context.Background(), file, iss.Key(jose.ES256).ID); err != nil {
		t.Errorf("an issuer with a JWKS file: %v", err)
	}
	if _, err := c.Key(context.Background(), file, "nope"); !errors.Is(err, accesstoken.ErrUnknownKey) {
		t.Errorf("an issuer with a JWKS file, unknown kid: %v", err)
	}
	f.none(t)
}

// metadataServer serves one metadata document at path and the issuer's JWKS.
func metadataServer(t *testing.T, iss *oauthtest.Issuer, path string, md func(base string) map[string]any) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	var srv *httptest.Server
	mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("content-type", "application/json")
		_ = json.NewEncoder(w).Encode(md(srv.URL))
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("content-type", "application/jwk-set+json")
		_, _ = w.Write(iss.JWKS())
	})
	mux.HandleFunc("GET /html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("content-type", "text/html")
		_, _ = w.Write([]byte("<html></html>"))
	})
	srv = httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func TestMetadata(t *testing.T) {
	iss := oauthtest.Start(t)
	kid := iss.Key(jose.ES256).ID
	lookup := func(issuerURL string) error {
		clk := &clock{now: time.Now()}
		c, f := newCache(clk)
		cfg := &accesstoken.Issuer{Name: "x", URL: issuerURL}
		_, err := c.Key(context.Background(), cfg, kid)
		<-f
		return err
	}
	// RFC 8414 only, for an issuer with a path: the well-known segment goes before the path.
	srv := metadataServer(t, iss, "/.well-known/oauth-authorization-server/tenant/a", func(base string) map[string]any {
		return map[string]any{"issuer": base + "/tenant/a", "jwks_uri": base + "/keys"}
	})
	if err := lookup(srv.URL + "/tenant/a"); err != nil {
		t.Errorf("RFC 8414 metadata: %v", err)
	}
	srv = metadataServer(t, iss, "/.well-known/openid-configuration", func(base string) map[string]any {
		return map[string]any{"issuer": "https://idp.evil.example", "jwks_uri": base + "/keys"}
	})
	if err := lookup(srv.URL); !errors.Is(err, accesstoken.ErrKeysUnavailable) {
		t.Errorf("metadata naming another issuer: %v", err)
	}
	srv = metadataServer(t, iss, "/.well-known/openid-configuration", func(base string) map[string]any {
		return map[string]any{"issuer": base, "jwks_uri": "http://keys.example/jwks"}
	})
	if err := lookup(srv.URL); !errors.Is(err, accesstoken.ErrKeysUnavailable) {
		t.Errorf("a plaintext jwks_uri off loopback: %v", err)
	}
	srv = metadataServer(t, iss, "/.well-known/openid-configuration", func(base string) map[string]any {
		return map[string]any{"issuer": base, "jwks_uri": base + "/html"}
	})
	if err := lookup(srv.URL); !errors.Is(err, accesstoken.ErrKeysUnavailable) {
		t.Errorf("a JWKS answered as HTML: %v", err)
	}
	if err := lookup("http://127.0.0.1:1"); !errors.Is(err, accesstoken.ErrKeysUnavailable) {
		t.Errorf("an unreachable issuer: %v", err)
	}
}

func TestMetadataURLs(t *testing.T) {
	for issuer, want := range map[string][2]string{
		"https://idp.example":          {"https://idp.example/.well-known/openid-configuration", "https://idp.example/.well-known/oauth-authorization-server"},
		"https://idp.example/":         {"https://idp.example/.well-known/openid-configuration", "https://idp.example/.well-known/oauth-authorization-server"},
		"https://idp.example/tenant/a": {"https://idp.example/tenant/a/.well-known/openid-configuration", "https://idp.example/.well-known/oauth-authorization-server/tenant/a"},
	} {
		got := oauthkeys.MetadataURLs(issuer)
		if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
			t.Errorf("MetadataURLs(%q) = %q, want %q", issuer, got, want)
		}
	}
}

func TestPrepareForgetsIssuersNoLongerNamed(t *testing.T) {
	a, b := oauthtest.Start(t), oauthtest.Start(t)
	clk := &clock{now: time.Now()}
	c, f := newCache(clk)
	ca, cb := issuerOf(a), issuerOf(b)
	c.Prepare([]*accesstoken.Issuer{ca, cb})
	f.wait(t, true)
	f.wait(t, true)
	c.Prepare([]*accesstoken.Issuer{ca}) // b dropped from the policy, a kept: no new fetch
	f.none(t)
	c.Prepare([]*accesstoken.Issuer{ca, cb}) // b named again: fetched again
	f.wait(t, true)
	if na, nb := a.JWKSFetches.Load(), b.JWKSFetches.Load(); na != 1 || nb != 2 {
		t.Errorf("JWKS fetches: a %d (want 1), b %d (want 2)", na, nb)
	}
}
