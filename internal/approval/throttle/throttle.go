// Package throttle slows down the guessing of approvers' credentials on the HTTP listener: it
// counts failed sign-ins per client address and, once an address has failed too often, refuses
// its sign-ins for a while without looking at them (the caller answers 429 with Retry-After).
// Other addresses are never affected, and the table of addresses is bounded: an attacker's
// addresses cannot grow memory.
package throttle

import (
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// Defaults of a Limiter.
const (
	// DefaultBurst failed (or in-flight) sign-ins in a row throttle an address.
	DefaultBurst = 10
	// DefaultEvery is how long an address takes to earn back one attempt.
	DefaultEvery = 30 * time.Second
	// DefaultMax bounds the addresses remembered.
	DefaultMax = 10000
)

// Limiter throttles failed sign-ins per client address (an IPv6 client's /64, where one host
// or one network usually has all its addresses). An address may fail Burst times in a row;
// after that it may try once per Every, each failure pushing its next chance another Every
// away, and each success giving one back. A sign-in in flight counts as a failure until it
// succeeds, so that many concurrent guesses from one address are refused like many sequential
// ones.
//
// The zero value is ready to use with the defaults. A nil *Limiter throttles nothing (Begin
// always lets the attempt through) and logs and counts nothing.
type Limiter struct {
	// Burst is how many failures in a row an address may have before it is throttled.
	Burst int
	// Every is how long an address takes to earn back one attempt: the longest a throttled
	// address waits for its next.
	Every time.Duration
	// Max bounds the addresses remembered. When it is reached, the addresses that have earned
	// back every attempt are forgotten, and if none has, the one closest to it: an attacker with
	// more addresses than Max can make the limiter forget some, but never makes it throttle an
	// address that did not fail.
	Max int
	// Clock is injected for tests; nil means time.Now.
	Clock func() time.Time
	// Log receives one line per failed sign-in and one when an address becomes throttled.
	Log *slog.Logger
	// Observe is told of each failed sign-in (throttled false) and of each attempt refused
	// while its address is throttled (throttled true), by surface: the metrics.
	Observe func(surface string, throttled bool)

	mu sync.Mutex
	// due is, for each address with failures (or attempts in flight), when it will have earned
	// every attempt back: its debt is due minus now, one Every per attempt.
	due map[netip.Prefix]time.Time
}

func (l *Limiter) now() time.Time {
	if l.Clock != nil {
		return l.Clock()
	}
	return time.Now()
}

func (l *Limiter) params() (burst int, every time.Duration, maxAddrs int) {
	burst, every, maxAddrs = l.Burst, l.Every, l.Max
	if burst <= 0 {
		burst = DefaultBurst
	}
	if every <= 0 {
		every = DefaultEvery
	}
	if maxAddrs <= 0 {
		maxAddrs = DefaultMax
	}
	return burst, every, maxAddrs
}

// Key is the address a request is throttled by: its client's IP address (an IPv4 address, or
// an IPv6 address's /64). A client address that is not an IP shares the invalid prefix.
func Key(remoteAddr string) netip.Prefix {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Prefix{}
	}
	ip = ip.Unmap().WithZone("")
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits) // bits fits the address
	return p
}

// Attempt is one sign-in that Begin let through. It counts against its address until Release
// says it was not a failure; Fail keeps it counted.
type Attempt struct {
	l       *Limiter
	key     netip.Prefix
	client  string
	surface string
	done    bool
}

// Begin starts a sign-in from r's client on surface ("api", "console", "slack"). While the
// client's address is throttled it returns a nil Attempt and how long until the address may
// try again: the caller answers 429 with that Retry-After and does not look at the credential.
func (l *Limiter) Begin(r *http.Request, surface string) (*Attempt, time.Duration) {
	if l == nil {
		return &Attempt{}, 0
	}
	burst, every, maxAddrs := l.params()
	key, now := Key(r.RemoteAddr), l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	due, ok := l.due[key]
	if !ok || due.Before(now) {
		due = now
	}
	// The attempt would make the debt due-now+every; more than burst attempts' worth is refused.
	if over := due.Add(every).Sub(now) - time.Duration(burst)*every; over > 0 {
		if l.Observe != nil {
			l.Observe(surface, true)
		}
		return nil, over
	}
	if !ok {
		if l.due == nil {
			l.due = map[netip.Prefix]time.Time{}
		}
		if len(l.due) >= maxAddrs {
			l.forget(now)
		}
	}
	l.due[key] = due.Add(every)
	return &Attempt{l: l, key: key, client: clientIP(r.RemoteAddr), surface: surface}, 0
}

// forget makes room for one more address: it drops every address that has earned back all its
// attempts, or if there is none, the one that is closest to it. l.mu is held.
func (l *Limiter) forget(now time.Time) {
	var oldest netip.Prefix
	var oldestDue time.Time
	dropped := false
	for k, due := range l.due {
		switch {
		case !due.After(now):
			delete(l.due, k)
			dropped = true
		case !dropped && (oldestDue.IsZero() || due.Before(oldestDue)):
			oldest, oldestDue = k, due
		}
	}
	if !dropped {
		delete(l.due, oldest)
	}
}

// Release says the attempt was not a failed sign-in (it succeeded, or carried no credential,
// or could not be checked): its address gets the attempt back.
func (a *Attempt) Release() {
	if a == nil || a.l == nil || a.done {
		return
	}
	a.done = true
	l := a.l
	_, every, _ := l.params()
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	due, ok := l.due[a.key]
	if !ok {
		return // forgotten meanwhile
	}
	if due = due.Add(-every); !due.After(now) {
		delete(l.due, a.key)
		return
	}
	l.due[a.key] = due
}

// Fail records a failed sign-in: it is logged with why and attrs (slog key-value pairs; never
// the credential), counted, and stays charged to the address, which may now be throttled.
func (a *Attempt) Fail(why string, attrs ...any) {
	if a == nil || a.l == nil || a.done {
		return
	}
	a.done = true
	l := a.l
	burst, every, _ := l.params()
	now := l.now()
	l.mu.Lock()
	due, ok := l.due[a.key]
	l.mu.Unlock()
	// Throttled once the next attempt would be refused.
	wait := due.Add(every).Sub(now) - time.Duration(burst)*every
	a.report(why, attrs)
	if ok && wait > 0 && l.Log != nil {
		l.Log.Warn("approver sign-ins from this address are throttled after repeated failures",
			"surface", a.surface, "client", a.client, "throttled", a.key.String(), "retry_after", wait.Round(time.Second).String())
	}
}

// FailUncharged records a failed sign-in that its client address did not cause, logged and
// counted as Fail does but given back to the address: a click from a Slack user who is not
// mapped to an approver comes from Slack's servers, whose addresses every approver's clicks
// share.
func (a *Attempt) FailUncharged(why string, attrs ...any) {
	if a == nil || a.l == nil || a.done {
		return
	}
	a.report(why, attrs)
	a.Release()
}

func (a *Attempt) report(why string, attrs []any) {
	l := a.l
	if l.Observe != nil {
		l.Observe(a.surface, false)
	}
	if l.Log != nil {
		l.Log.Warn("approver sign-in failed", append([]any{"surface", a.surface, "client", a.client, "reason", why}, attrs...)...)
	}
}

// clientIP is the client address as logged: the IP address without the port.
func clientIP(remoteAddr string) string {
	if host, _, err := net.SplitHostPort(remoteAddr); err == nil {
		return host
	}
	return remoteAddr
}

// Len is how many addresses the limiter remembers: at most Max.
func (l *Limiter) Len() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.due)
}

// RetryAfter is the value of a Retry-After header for a wait: whole seconds, at least 1.
func RetryAfter(wait time.Duration) int {
	return max(1, int((wait+time.Second-1)/time.Second))
}
