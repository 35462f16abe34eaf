package approval

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"time"
)

// approvalURL is the console's page of one approval.
func (g *Gate) approvalURL(id string) string {
	return strings.TrimSuffix(g.ConsoleURL, "/") + "/approvals/requests/" + id
}

// signState is the request state of a held MCP tool call (MCP revision 2026-07-28): the
// approval, the digest of the call it holds and when it lapses, with an HMAC-SHA256 of them
// under StateKey. It carries no secret and nothing the client may act on; it only lets the
// gateway refuse a state it did not give for this call. An approval lets one call through
// whatever states are sent: the store consumes it once.
func (g *Gate) signState(id, digest string, expires time.Time) string {
	payload := "v1." + id + "." + digest + "." + strconv.FormatInt(expires.Unix(), 10)
	return base64.RawURLEncoding.EncodeToString([]byte(payload)) + "." + base64.RawURLEncoding.EncodeToString(g.stateMAC(payload))
}

func (g *Gate) stateMAC(payload string) []byte {
	m := hmac.New(sha256.New, g.StateKey)
	m.Write([]byte("agentauthz-mcp-request-state\x00"))
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// validState reports whether state is one signState gave for a call with this digest, not
// lapsed at now.
func (g *Gate) validState(state, digest string, now time.Time) bool {
	if len(g.StateKey) < 32 {
		return false
	}
	p64, m64, ok := strings.Cut(state, ".")
	if !ok {
		return false
	}
	payload, err := base64.RawURLEncoding.DecodeString(p64)
	if err != nil {
		return false
	}
	mac, err := base64.RawURLEncoding.DecodeString(m64)
	if err != nil || !hmac.Equal(mac, g.stateMAC(string(payload))) {
		return false
	}
	parts := strings.Split(string(payload), ".")
	if len(parts) != 4 || parts[0] != "v1" || !ValidID(parts[1]) || parts[2] != digest {
		return false
	}
	exp, err := strconv.ParseInt(parts[3], 10, 64)
	return err == nil && now.Before(time.Unix(exp, 0))
}
