// Package oauthkeys holds the signing keys of the OAuth issuers a policy names without a JWKS
// file: fetched from the issuer's JWKS URL, or from the jwks_uri of its metadata (OpenID Connect
// discovery, then RFC 8414), and cached across policy reloads.
//
// The request path never waits on the network for a key it has. Keys are fetched when a policy
// names the issuer (Prepare, before the policy is swapped in); again in the background when the
// cached set is older than MaxAge; and when a token names a key id the cache does not hold, at
// most once per MinRefresh per issuer: a flood of tokens with invented key ids costs the issuer
// one fetch per interval, not one per token (go-oidc's remote key set, by contrast, fetches on
// every signature it cannot verify, coalescing only concurrent fetches). A request waits for such
// a fetch no longer than its own deadline; the fetch itself runs on to completion for the
// requests after it.
package oauthkeys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentauthz/agentauthz/policy/accesstoken"
)

// Defaults for Config.
const (
	DefaultMinRefresh   = 30 * time.Second
	DefaultMaxAge       = time.Hour
	DefaultFetchTimeout = 10 * time.Second
	// maxDocument bounds a metadata or JWKS document.
	maxDocument = 1 << 20
)

// Config tunes a Cache. The zero value works.
type Config struct {
	// HTTPClient fetches metadata and keys; nil means a client with FetchTimeout.
	HTTPClient *http.Client
	// MinRefresh is the least time between two fetches of one issuer's keys.
	MinRefresh time.Duration
	// MaxAge is how long fetched keys are used before they are fetched again in the background
	// (keys the issuer withdrew stop verifying within it).
	MaxAge time.Duration
	// FetchTimeout bounds one fetch, metadata and JWKS together.
	FetchTimeout time.Duration
	// Clock is injected for tests; nil means time.Now.
	Clock func() time.Time
	// Log receives fetch failures and keys left out; nil discards them.
	Log *slog.Logger
	// Observe, when set, is told of each fetch: the issuer's URL and whether it succeeded.
	Observe func(issuer string, ok bool)
}

// Cache holds the fetched key sets of issuers. It is safe for concurrent use.
type Cache struct {
	cfg Config

	mu   sync.RWMutex
	sets map[setKey]*keySet
}

var _ accesstoken.Keys = (*Cache)(nil)

// setKey identifies a key set by where it comes from: an issuer's keys from its metadata, or
// from an explicit JWKS URL.
type setKey struct{ issuer, jwksURL string }

// New returns an empty Cache.
func New(cfg Config) *Cache {
	if cfg.MinRefresh == 0 {
		cfg.MinRefresh = DefaultMinRefresh
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.FetchTimeout == 0 {
		cfg.FetchTimeout = DefaultFetchTimeout
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: cfg.FetchTimeout}
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Cache{cfg: cfg, sets: map[setKey]*keySet{}}
}

// Prepare starts fetching the keys of every issuer in issuers whose keys are fetched and not yet
// cached, without waiting, and forgets the key sets of issuers no longer named. Call it with a
// policy's issuers before the policy is put in force.
func (c *Cache) Prepare(issuers []*accesstoken.Issuer) {
	keep := map[setKey]bool{}
	for _, iss := range issuers {
		if iss.Keys != nil {
			continue
		}
		s := c.set(iss)
		keep[s.src] = true
		s.refreshIfStale()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.sets {
		if !keep[k] {
			delete(c.sets, k)
		}
	}
}

// Key implements accesstoken.Keys: the policy's keys for an issuer with a JWKS file, else the
// cached key set's, fetching it when kid is not in it (see the package comment).
func (c *Cache) Key(ctx context.Context, iss *accesstoken.Issuer, kid string) (*accesstoken.Key, error) {
	if iss.Keys != nil {
		return accesstoken.PolicyKeys{}.Key(ctx, iss, kid)
	}
	return c.set(iss).lookup(ctx, kid)
}

// set returns the key set of iss, creating it (empty) if needed.
func (c *Cache) set(iss *accesstoken.Issuer) *keySet {
	k := setKey{iss.URL, iss.JWKSURL}
	c.mu.RLock()
	s := c.sets[k]
	c.mu.RUnlock()
	if s != nil {
		return s
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s = c.sets[k]
	if s == nil {
		s = &keySet{cache: c, src: k, name: iss.Name}
		c.sets[k] = s
	}
	return s
}

// keySet is one issuer's fetched keys.
type keySet struct {
	cache *Cache
	src   setKey
	name  string

	keys atomic.Pointer[fetched] // nil until a fetch succeeds

	mu        sync.Mutex
	attempted time.Time     // when the last fetch started
	inflight  chan struct{} // closed when the fetch under way ends; nil when none is
	lastErr   error         // the last fetch's failure, nil after a success
	jwksURL   string        // from the metadata, once read
}

// fetched is one successful fetch.
type fetched struct {
	set *accesstoken.KeySet
	at  time.Time
}

func (s *keySet) lookup(ctx context.Context, kid string) (*accesstoken.Key, error) {
	f := s.keys.Load()
	if f != nil {
		if k := f.set.Get(kid); k != nil {
			if s.cache.cfg.Clock().Sub(f.at) >= s.cache.cfg.MaxAge {
				s.refreshIfStale()
			}
			return k, nil
		}
	}
	// A key id not seen: fetch, unless a fetch started too recently.
	done, err := s.start(true)
	if done == nil {
		return nil, err
	}
	select {
	case <-done:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: waiting for the keys of %s: %v", accesstoken.ErrKeysUnavailable, s.name, ctx.Err())
	}
	f = s.keys.Load()
	if f == nil {
		s.mu.Lock()
		err := s.lastErr
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: %v", accesstoken.ErrKeysUnavailable, err)
	}
	if k := f.set.Get(kid); k != nil {
		return k, nil
	}
	return nil, accesstoken.ErrUnknownKey
}

// start starts a fetch unless one is under way (whose channel it returns) or one started less
// than MinRefresh ago; then it returns a nil channel and the error a lookup of an unknown key
// answers with.
func (s *keySet) start(force bool) (<-chan struct{}, error) {
	c := s.cache
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inflight != nil {
		return s.inflight, nil
	}
	now := c.cfg.Clock()
	if !s.attempted.IsZero() && now.Sub(s.attempted) < c.cfg.MinRefresh {
		if s.keys.Load() == nil {
			return nil, fmt.Errorf("%w: %v", accesstoken.ErrKeysUnavailable, s.lastErr)
		}
		return nil, accesstoken.ErrUnknownKey
	}
	if !force {
		if f := s.keys.Load(); f != nil && now.Sub(f.at) < c.cfg.MaxAge {
			return nil, nil
		}
	}
	s.attempted = now
	done := make(chan struct{})
	s.inflight = done
	go s.fetch(done)
	return done, nil
}

// refreshIfStale starts a background fetch when the keys are older than MaxAge, or were never
// fetched.
func (s *keySet) refreshIfStale() { _, _ = s.start(false) }

// fetch fetches the key set, on a context of its own: a request that stops waiting does not
// cancel it.
func (s *keySet) fetch(done chan struct{}) {
	c := s.cache
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.FetchTimeout)
	defer cancel()
	set, err := s.download(ctx)
	s.mu.Lock()
	if err == nil {
		s.keys.Store(&fetched{set: set, at: c.cfg.Clock()})
	}
	s.lastErr = err
	s.inflight = nil
	s.mu.Unlock()
	close(done)
	if c.cfg.Observe != nil {
		c.cfg.Observe(s.src.issuer, err == nil)
	}
	if err != nil {
		c.cfg.Log.Warn("OAuth issuer keys not fetched; cached keys, if any, keep verifying", "issuer", s.name, "error", err.Error())
	}
}

// download reads the JWKS, finding its URL in the metadata first if the policy gives none.
func (s *keySet) download(ctx context.Context) (*accesstoken.KeySet, error) {
	jwksURL := s.src.jwksURL
	if jwksURL == "" {
		s.mu.Lock()
		jwksURL = s.jwksURL
		s.mu.Unlock()
	}
	if jwksURL == "" {
		u, err := s.discover(ctx)
		if err != nil {
			return nil, err
		}
		jwksURL = u
	}
	data, err := s.cache.get(ctx, jwksURL)
	if err != nil {
		s.forgetDiscovered()
		return nil, err
	}
	set, skipped, err := accesstoken.ParsePublishedKeySet(data)
	if err != nil {
		return nil, fmt.Errorf("oauthkeys: %s: %v", jwksURL, err)
	}
	for _, why := range skipped {
		s.cache.cfg.Log.Info("OAuth issuer key left out", "issuer", s.name, "why", why)
	}
	if set.Len() == 0 {
		return nil, fmt.Errorf("oauthkeys: %s holds no key that verifies signatures", jwksURL)
	}
	return set, nil
}

// forgetDiscovered makes the next fetch read the metadata again: the JWKS may have moved.
func (s *keySet) forgetDiscovered() {
	s.mu.Lock()
	s.jwksURL = ""
	s.mu.Unlock()
}

// discover reads the issuer's metadata for its jwks_uri: OpenID Connect discovery, then RFC
// 8414's well-known URI. The metadata must name the issuer exactly as the policy does (RFC 8414
// §3.3, OpenID Connect Discovery §4.3), or its keys are not the issuer's.
func (s *keySet) discover(ctx context.Context) (string, error) {
	var errs []error
	for _, u := range MetadataURLs(s.src.issuer) {
		data, err := s.cache.get(ctx, u)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var md struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := json.Unmarshal(data, &md); err != nil {
			errs = append(errs, fmt.Errorf("oauthkeys: %s: not a metadata document: %v", u, err))
			continue
		}
		if md.Issuer != s.src.issuer {
			return "", fmt.Errorf("oauthkeys: %s names issuer %q, not %q", u, md.Issuer, s.src.issuer)
		}
		if err := checkURL(md.JWKSURI); err != nil {
			return "", fmt.Errorf("oauthkeys: %s: jwks_uri: %v", u, err)
		}
		s.mu.Lock()
		s.jwksURL = md.JWKSURI
		s.mu.Unlock()
		return md.JWKSURI, nil
	}
	return "", errors.Join(errs...)
}

// MetadataURLs are where an issuer's metadata is looked for, in order: OpenID Connect discovery
// (the well-known path appended to the issuer) and RFC 8414 (the well-known path inserted
// between host and path).
func MetadataURLs(issuer string) []string {
	oidc := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	u, err := url.Parse(issuer)
	if err != nil {
		return []string{oidc}
	}
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	rfc8414 := u.Scheme + "://" + u.Host + "/.well-known/oauth-authorization-server" + path
	return []string{oidc, rfc8414}
}

// get fetches one JSON document.
func (c *Cache) get(ctx context.Context, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("oauthkeys: %s: %v", u, err)
	}
	req.Header.Set("accept", "application/json")
	resp, err := c.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("oauthkeys: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("oauthkeys: %s answered %s", u, resp.Status)
	}
	if ct := resp.Header.Get("content-type"); ct != "" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || (mt != "application/json" && mt != "application/jwk-set+json") {
			return nil, fmt.Errorf("oauthkeys: %s answered %q, not JSON", u, ct)
		}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxDocument+1))
	if err != nil {
		return nil, fmt.Errorf("oauthkeys: %s: %v", u, err)
	}
	if len(data) > maxDocument {
		return nil, fmt.Errorf("oauthkeys: %s: the document is larger than %d bytes", u, maxDocument)
	}
	return data, nil
}

// checkURL refuses a jwks_uri that is not https (or http to a loopback address).
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q is not an absolute URL", raw)
	}
	if u.Scheme == "https" {
		return nil
	}
	if u.Scheme == "http" {
		h := u.Hostname()
		if ip := net.ParseIP(h); strings.EqualFold(h, "localhost") || (ip != nil && ip.IsLoopback()) {
			return nil
		}
	}
	return fmt.Errorf("%q must be https (or http to a loopback address)", raw)
}
