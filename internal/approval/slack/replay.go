package slack

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// signature is a decoded v0 signature: HMAC-SHA256 of "v0:TIMESTAMP:BODY".
type signature [sha256.Size]byte

// readSigned reads the signature headers of a request, strictly: exactly one
// X-Slack-Request-Timestamp in canonical decimal (no sign, no leading zeros) and exactly one
// X-Slack-Signature, "v0=" and 64 lower-case hex digits, as Slack writes them. Any other
// spelling of the same bytes (upper-case hex, a second header) is refused, so that one
// signature has one form: the replay cache keys on the bytes, and a variant cannot pass as
// new.
func readSigned(h http.Header) (ts int64, tsText string, sig signature, ok bool) {
	tss, sigs := h.Values("X-Slack-Request-Timestamp"), h.Values("X-Slack-Signature")
	if len(tss) != 1 || len(sigs) != 1 {
		return 0, "", sig, false
	}
	ts, err := strconv.ParseInt(tss[0], 10, 64)
	if err != nil || ts < 0 || strconv.FormatInt(ts, 10) != tss[0] {
		return 0, "", sig, false
	}
	s := sigs[0]
	if len(s) != len("v0=")+2*len(sig) || s[:3] != "v0=" {
		return 0, "", sig, false
	}
	for i := 3; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return 0, "", sig, false
		}
	}
	if _, err := hex.Decode(sig[:], []byte(s[3:])); err != nil {
		return 0, "", sig, false
	}
	return ts, tss[0], sig, true
}

// signedBy reports, in constant time per secret, whether sig is the v0 signature of the
// timestamp (as sent) and body under one of secrets.
func signedBy(secrets []string, tsText string, body []byte, sig signature) bool {
	ok := false
	for _, secret := range secrets {
		if secret == "" {
			continue
		}
		m := hmac.New(sha256.New, []byte(secret))
		m.Write([]byte("v0:" + tsText + ":"))
		m.Write(body)
		if hmac.Equal(m.Sum(nil), sig[:]) {
			ok = true
		}
	}
	return ok
}

var (
	errReplayed = errors.New("replayed")
	errBusy     = errors.New("busy")
)

// maxSlackSeen bounds the replay cache: more signed interactions than Slack sends any app in
// its 5-minute window.
const maxSlackSeen = 10000

// replayCache remembers the signatures of the interactions accepted, by their decoded bytes,
// until their timestamps leave Slack's window (after which Interactions refuses them as stale),
// so that none is accepted twice.
//
// Only requests signed with a signing secret reach it, so a captured request is one entry
// however often it is replayed, and no spelling of its signature is another (readSigned). It
// holds at most max entries, grouped by timestamp second. When a new signature would exceed
// that, the entries of the oldest seconds before the new one's are forgotten, and from then on
// every request with a timestamp at or before the newest second forgotten is refused as a
// possible replay (floor): a fresh click, whose timestamp is newer than anything forgotten, is
// never refused for want of room. Only max requests signed by Slack within one second, all at
// least as new as the click, could refuse it (errBusy).
type replayCache struct {
	max int // 0 means maxSlackSeen

	mu     sync.Mutex
	bySec  map[int64]map[signature]struct{} // timestamp second → the signatures sent with it
	n      int                              // entries in bySec
	floor  int64                            // timestamps at or before it are refused
	floord bool                             // floor is set
}

// remember records sig, sent at timestamp ts, and says whether it was seen before (errReplayed,
// also for a timestamp at or before the floor) or there is no room (errBusy). now is when it
// is received; entries whose timestamps are more than window before now are dropped.
func (c *replayCache) remember(sig signature, ts int64, now time.Time, window time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bySec == nil {
		c.bySec = map[int64]map[signature]struct{}{}
	}
	// A timestamp older than this is stale: its signatures need not be remembered.
	stale := now.Add(-window).Unix() - 1
	for sec, sigs := range c.bySec {
		if sec < stale {
			c.n -= len(sigs)
			delete(c.bySec, sec)
		}
	}
	if c.floord && ts <= c.floor {
		return errReplayed
	}
	if _, ok := c.bySec[ts][sig]; ok {
		return errReplayed
	}
	limit := c.max
	if limit <= 0 {
		limit = maxSlackSeen
	}
	for c.n >= limit {
		oldest, found := int64(0), false
		for sec := range c.bySec {
			if sec < ts && (!found || sec < oldest) {
				oldest, found = sec, true
			}
		}
		if !found {
			return errBusy
		}
		c.n -= len(c.bySec[oldest])
		delete(c.bySec, oldest)
		if !c.floord || oldest > c.floor {
			c.floor, c.floord = oldest, true
		}
	}
	sigs := c.bySec[ts]
	if sigs == nil {
		sigs = map[signature]struct{}{}
		c.bySec[ts] = sigs
	}
	sigs[sig] = struct{}{}
	c.n++
	return nil
}

// size is how many signatures are remembered.
func (c *replayCache) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}
