package approval

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/agentauthz/agentauthz/policy/strictjson"
)

// Digest binds an approval to one request: the agent, method, host (lower case), path with its
// raw query, the rule that held it and the body, canonicalised for JSON (RFC 8785: member order
// and number spelling do not matter) and as sent otherwise. Each part is length-prefixed, so no
// two requests share a digest by shifting bytes between parts.
//
// RFC 8785 rounds every number to a float64. A JSON body with a number that rounding would
// change (9007199254740993, 0.10000000000000001) is therefore digested as sent: otherwise two
// bodies an upstream reads as different values (two account ids) would share one approval.
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

// errInexact means a body holds a number that RFC 8785's float64 form would change.
var errInexact = errors.New("approval: a JSON number is not exact as a float64")

// canonicalJSON is the RFC 8785 form of a strict JSON body whose numbers are all exact float64s.
func canonicalJSON(body []byte) ([]byte, error) {
	if err := strictjson.Check(body, strictjson.DefaultMaxDepth); err != nil {
		return nil, err
	}
	if err := exactNumbers(body); err != nil {
		return nil, err
	}
	v := jsontext.Value(append([]byte(nil), body...))
	if err := v.Canonicalize(); err != nil {
		return nil, err
	}
	return v, nil
}

// exactNumbers checks that every number of a strict JSON body has the value of its float64, so
// that canonicalising it loses nothing.
func exactNumbers(body []byte) error {
	dec := jsontext.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := dec.ReadToken()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if tok.Kind() == '0' && !exactNumber(tok.String()) {
			return errInexact
		}
	}
}

// exactNumber reports whether the JSON number s has exactly the value of the shortest form of
// its float64, the form RFC 8785 writes.
func exactNumber(s string) bool {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) {
		return false
	}
	a, ok1 := decimal(s)
	b, ok2 := decimal(strconv.FormatFloat(f, 'g', -1, 64))
	return ok1 && ok2 && a == b
}

// decimalValue is the value of a decimal number: sign, significant digits (no leading or
// trailing zeros) and the position of the decimal point. "-12.50e1" and "-125" are both
// {true, "125", 3}.
type decimalValue struct {
	neg    bool
	digits string
	point  int
}

// decimal reads a JSON number's value. ok is false for an exponent too large to matter (the
// number is then not an exact float64 anyway).
func decimal(s string) (d decimalValue, ok bool) {
	s, d.neg = strings.CutPrefix(s, "-")
	mant, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e := strings.TrimPrefix(s[i+1:], "+")
		if len(e) > 8 {
			return d, false
		}
		var err error
		if exp, err = strconv.Atoi(e); err != nil {
			return d, false
		}
		mant = s[:i]
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	digits := intPart + frac
	point := len(intPart) + exp
	for len(digits) > 0 && digits[0] == '0' {
		digits, point = digits[1:], point-1
	}
	digits = strings.TrimRight(digits, "0")
	if digits == "" {
		return decimalValue{neg: d.neg}, true
	}
	d.digits, d.point = digits, point
	return d, true
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
