package decision

import (
	"strconv"
	"time"
	"unicode/utf8"
	"unsafe"
)

// ProblemContentType is the media type of a denial's body (RFC 9457).
const ProblemContentType = "application/problem+json"

// TypeURI is the problem "type" of a code: a URN, stable like the code itself.
func (c Code) TypeURI() string { return "urn:agentauthz:problem:" + string(c) }

// Problem renders the denial as RFC 9457 problem details:
//
//	{"type":"urn:agentauthz:problem:query_invalid","title":"Invalid query","status":400,
//	 "detail":"...","code":"query_invalid","decision_id":"...","rule":"list-tickets",
//	 "violations":[{"field":"query.limit","rule":"maximum","message":"must be at most 100"}]}
//
// It is written by hand, without reflection, because every denial pays for it.
func (d *Decision) Problem(decisionID string) string {
	code := d.Code
	if code == "" {
		code = CodeInternal
	}
	detail := d.Detail
	if detail == "" {
		detail = "The request was refused."
	}
	n := 160 + len(code)*2 + len(detail) + len(decisionID) + len(d.Rule)
	if d.Approval != nil {
		n += 120 + len(d.Approval.ID)
	}
	for _, v := range d.Violations {
		n += 40 + len(v.Field) + len(v.Rule) + len(v.Message)
	}
	b := make([]byte, 0, n)
	b = append(b, `{"type":"urn:agentauthz:problem:`...)
	b = append(b, code...) // codes are plain ASCII identifiers
	b = append(b, `","title":`...)
	b = appendJSONString(b, code.Title())
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(code.Status()), 10)
	b = append(b, `,"detail":`...)
	b = appendJSONString(b, detail)
	b = append(b, `,"code":"`...)
	b = append(b, code...)
	b = append(b, '"')
	if decisionID != "" {
		b = append(b, `,"decision_id":`...)
		b = appendJSONString(b, decisionID)
	}
	if d.Rule != "" {
		b = append(b, `,"rule":`...)
		b = appendJSONString(b, d.Rule)
	}
	if a := d.Approval; a != nil {
		b = append(b, `,"approval_id":`...)
		b = appendJSONString(b, a.ID)
		b = append(b, `,"approval_state":`...)
		b = appendJSONString(b, a.State)
		if !a.Expires.IsZero() {
			b = append(b, `,"approval_expires_at":"`...)
			b = a.Expires.UTC().AppendFormat(b, time.RFC3339)
			b = append(b, '"')
		}
	}
	if len(d.Violations) > 0 {
		b = append(b, `,"violations":[`...)
		for i, v := range d.Violations {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"field":`...)
			b = appendJSONString(b, v.Field)
			b = append(b, `,"rule":`...)
			b = appendJSONString(b, v.Rule)
			b = append(b, `,"message":`...)
			b = appendJSONString(b, v.Message)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, '}')
	// b is never written again: the string shares its bytes instead of copying them.
	return unsafe.String(unsafe.SliceData(b), len(b))
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD; control characters
// and the characters HTML treats specially are escaped.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20 || c == '<' || c == '>' || c == '&' || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else if r == '\u2028' || r == '\u2029' {
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
