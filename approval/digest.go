package approval

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime"
	"strings"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/agentauthz/agentauthz/strictjson"
)

// Digest binds an approval to one request: the agent, method, host (lower case), path with its
// raw query, the rule that held it and the body, canonicalised for JSON (RFC 8785: member order
// and number spelling do not matter) and as sent otherwise. Each part is length-prefixed, so no
// two requests share a digest by shifting bytes between parts.
func Digest(agent, method, host, path, rule, contentType string, body []byte) string {
	h := sha256.New()
	part := func(b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	part([]byte("agentauthz-approval-v1"))
	part([]byte(agent))
	part([]byte(method))
	part([]byte(strings.ToLower(host)))
	part([]byte(path))
	part([]byte(rule))
	if isJSON(contentType) {
		if canon, err := canonicalJSON(body); err == nil {
			part([]byte("json"))
			part(canon)
			return hex.EncodeToString(h.Sum(nil))
		}
	}
	part([]byte("bytes"))
	part(body)
	return hex.EncodeToString(h.Sum(nil))
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// canonicalJSON is the RFC 8785 form of a strict JSON body.
func canonicalJSON(body []byte) ([]byte, error) {
	if err := strictjson.Check(body, strictjson.DefaultMaxDepth); err != nil {
		return nil, err
	}
	v := jsontext.Value(append([]byte(nil), body...))
	if err := v.Canonicalize(); err != nil {
		return nil, err
	}
	return v, nil
}

// DisplayBody is what approvers see of a body: JSON pretty-printed with the fields at the
// given JSON pointers replaced by "[redacted]"; anything else described, never shown raw.
func DisplayBody(contentType string, body []byte, redact []string) string {
	if len(body) == 0 {
		return ""
	}
	if isJSON(contentType) {
		if v, err := strictjson.Parse(body, strictjson.DefaultMaxDepth); err == nil {
			for _, p := range redact {
				v = redactPointer(v, p)
			}
			if out, err := json.MarshalIndent(v, "", "  "); err == nil {
				return string(out)
			}
		}
	}
	return fmt.Sprintf("(%d bytes of %s, not shown)", len(body), contentType)
}

// redactPointer replaces the value at JSON pointer p (RFC 6901), if present.
func redactPointer(v any, p string) any {
	if p == "" {
		return "[redacted]"
	}
	tokens := strings.Split(p[1:], "/")
	for i, t := range tokens {
		tokens[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
	}
	var walk func(v any, ts []string) any
	walk = func(v any, ts []string) any {
		if len(ts) == 0 {
			return "[redacted]"
		}
		switch x := v.(type) {
		case map[string]any:
			if child, ok := x[ts[0]]; ok {
				x[ts[0]] = walk(child, ts[1:])
			}
		case []any:
			var i int
			if _, err := fmt.Sscanf(ts[0], "%d", &i); err == nil && i >= 0 && i < len(x) && fmt.Sprint(i) == ts[0] {
				x[i] = walk(x[i], ts[1:])
			}
		}
		return v
	}
	return walk(v, tokens)
}
