package throttle_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentauthz/agentauthz/internal/approval/throttle"
)

type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

// observed counts Observe calls by surface and kind.
type observed struct {
	mu sync.Mutex
	n  map[string]int
}

func (o *observed) observe(surface string, throttled bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n == nil {
		o.n = map[string]int{}
	}
	o.n[fmt.Sprintf("%s/%v", surface, throttled)]++
}

func (o *observed) get(key string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n[key]
}

func newLimiter(burst int, every time.Duration) (*throttle.Limiter, *clock, *observed, *bytes.Buffer) {
	c, o, logs := &clock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}, &observed{}, &bytes.Buffer{}
	return &throttle.Limiter{Burst: burst, Every: every, Clock: c.Now, Observe: o.observe,
		Log: slog.New(slog.NewTextHandler(logs, nil))}, c, o, logs
}

// attempt begins a sign-in from addr; it fails the test if the throttle's answer is not want.
func attempt(t *testing.T, l *throttle.Limiter, addr string, want bool) (*throttle.Attempt, time.Duration) {
	t.Helper()
	r := httptest.NewRequest("POST", "/approvals/api/session", nil)
	r.RemoteAddr = addr
	a, wait := l.Begin(r, "console")
	if (a != nil) != want {
		t.Fatalf("Begin from %s let through = %v (wait %v), want %v", addr, a != nil, wait, want)
	}
	if a == nil && wait <= 0 {
		t.Fatalf("Begin from %s refused with wait %v", addr, wait)
	}
	return a, wait
}

// TestThrottle: an address may fail Burst times; then its sign-ins are refused, with how long
// to wait, until it has earned one back; each new failure pushes the next chance another Every
// away. Another address is never refused meanwhile, and successes never throttle.
func TestThrottle(t *testing.T) {
	l, c, o, logs := newLimiter(3, 30*time.Second)
	attacker, approver := "192.0.2.7:40000", "198.51.100.1:50000"
	for i := range 3 {
		a, _ := attempt(t, l, fmt.Sprintf("192.0.2.7:%d", 40000+i), true) // any port: the address counts
		a.Fail("bad token")
	}
	_, wait := attempt(t, l, attacker, false)
	if wait != 30*time.Second || throttle.RetryAfter(wait) != 30 {
		t.Errorf("wait = %v (Retry-After %d), want 30s", wait, throttle.RetryAfter(wait))
	}
	for range 20 {
		a, _ := attempt(t, l, approver, true)
		a.Release()
	}
	c.now = c.now.Add(10 * time.Second)
	if _, wait := attempt(t, l, attacker, false); wait != 20*time.Second {
		t.Errorf("10s later wait = %v, want 20s", wait)
	}
	c.now = c.now.Add(20 * time.Second)
	a, _ := attempt(t, l, attacker, true)
	a.Fail("bad token")
	if _, wait := attempt(t, l, attacker, false); wait != 30*time.Second {
		t.Errorf("after a failure once let through, wait = %v, want 30s", wait)
	}
	c.now = c.now.Add(30 * time.Second)
	a, _ = attempt(t, l, attacker, true)
	a.Release() // it succeeded: the attempt is given back
	a, _ = attempt(t, l, attacker, true)
	a.Release()

	if got := o.get("console/false"); got != 4 {
		t.Errorf("Observe saw %d failures, want 4", got)
	}
	if got := o.get("console/true"); got != 3 {
		t.Errorf("Observe saw %d throttled attempts, want 3", got)
	}
	out := logs.String()
	if n := strings.Count(out, "approver sign-in failed"); n != 4 {
		t.Errorf("%d failure lines, want 4:\n%s", n, out)
	}
	if !strings.Contains(out, "surface=console client=192.0.2.7 reason=\"bad token\"") ||
		!strings.Contains(out, "are throttled") || strings.Contains(out, "198.51.100.1") {
		t.Errorf("log:\n%s", out)
	}
}

// TestThrottleInFlight: attempts in flight count until they end, so concurrent guesses from one
// address are refused like sequential ones.
func TestThrottleInFlight(t *testing.T) {
	l, _, _, _ := newLimiter(3, time.Minute)
	var open []*throttle.Attempt
	for range 3 {
		a, _ := attempt(t, l, "192.0.2.7:1", true)
		open = append(open, a)
	}
	attempt(t, l, "192.0.2.7:1", false)
	for _, a := range open {
		a.Release()
	}
	a, _ := attempt(t, l, "192.0.2.7:1", true)
	a.Release()
	if n := l.Len(); n != 0 {
		t.Errorf("%d addresses remembered after every attempt was given back, want 0", n)
	}
}

// TestThrottleBounded: an attacker's many addresses never grow the table past Max, and never
// make the limiter refuse an address that did not fail.
func TestThrottleBounded(t *testing.T) {
	l, c, _, _ := newLimiter(2, time.Minute)
	l.Max = 100
	for i := range 5000 {
		addr := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String() + ":1"
		for range 2 {
			a, _ := attempt(t, l, addr, true)
			a.Fail("bad token")
		}
		if n := l.Len(); n > 100 {
			t.Fatalf("%d addresses remembered, more than Max", n)
		}
		if i%97 == 0 {
			a, _ := attempt(t, l, "198.51.100.1:1", true)
			a.Release()
		}
		c.now = c.now.Add(time.Millisecond)
	}
	// The newest attackers are still throttled.
	attempt(t, l, "10.0.19.135:1", false) // the 4999th
}

// TestThrottleKey: addresses count without their port, IPv4-mapped IPv6 as IPv4, and IPv6 by
// its /64.
func TestThrottleKey(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{"192.0.2.7:1", "192.0.2.7:2"},
		{"192.0.2.7:1", "[::ffff:192.0.2.7]:2"},
		{"[2001:db8:1:2::1]:1", "[2001:db8:1:2:ffff::9]:2"},
		{"[fe80::1%eth0]:1", "[fe80::2]:1"},
	} {
		if ka, kb := throttle.Key(tc.a), throttle.Key(tc.b); ka != kb || !ka.IsValid() {
			t.Errorf("Key(%s) = %v, Key(%s) = %v; want the same", tc.a, ka, tc.b, kb)
		}
	}
	for _, tc := range []struct{ a, b string }{
		{"192.0.2.7:1", "192.0.2.8:1"},
		{"[2001:db8:1:2::1]:1", "[2001:db8:1:3::1]:1"},
	} {
		if ka, kb := throttle.Key(tc.a), throttle.Key(tc.b); ka == kb {
			t.Errorf("Key(%s) = Key(%s) = %v; want different", tc.a, tc.b, ka)
		}
	}
	l, _, _, _ := newLimiter(1, time.Minute)
	a, _ := attempt(t, l, "[2001:db8:1:2::1]:1", true)
	a.Fail("bad token")
	attempt(t, l, "[2001:db8:1:2::99]:1", false)
	a, _ = attempt(t, l, "[2001:db8:1:3::1]:1", true)
	a.Release()
}

// TestThrottleNil: a nil Limiter lets everything through and records nothing.
func TestThrottleNil(t *testing.T) {
	var l *throttle.Limiter
	for range 100 {
		a, _ := attempt(t, l, "192.0.2.7:1", true)
		a.Fail("bad token")
	}
	if l.Len() != 0 {
		t.Error("a nil Limiter remembers addresses")
	}
}

// TestThrottleUncharged: FailUncharged counts and logs a failure but does not throttle the
// address (Slack's servers, shared by every approver's clicks).
func TestThrottleUncharged(t *testing.T) {
	l, _, o, logs := newLimiter(2, time.Minute)
	for range 10 {
		a, _ := attempt(t, l, "192.0.2.7:1", true)
		a.FailUncharged("Slack user not mapped to an approver", "slack_user_id", "U0123")
	}
	if got := o.get("console/false"); got != 10 {
		t.Errorf("Observe saw %d failures, want 10", got)
	}
	if n := strings.Count(logs.String(), "slack_user_id=U0123"); n != 10 {
		t.Errorf("%d log lines name the Slack user, want 10:\n%s", n, logs.String())
	}
}
