package extauthz

import (
	"strings"
	"unsafe"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/agentauthz/agentauthz/internal/engine"
	"github.com/agentauthz/agentauthz/policy"
	"github.com/agentauthz/agentauthz/policy/decision"
	"github.com/agentauthz/agentauthz/policy/target"
)

// PartialBodyHeader is the header Envoy adds to every check that carries a body: "true" when it
// cut the body short at max_request_bytes.
const PartialBodyHeader = "x-envoy-auth-partial-body"

// mapHeaders reads Envoy's "headers" map: lower-case names, repeated headers joined by ",".
type mapHeaders map[string]string

func (h mapHeaders) Get(name string) (string, int) {
	v, ok := h[name]
	if !ok {
		return "", 0
	}
	return v, 1
}

// EachWithPrefix implements policy.HeaderLister.
func (h mapHeaders) EachWithPrefix(prefix string, fn func(name, value string)) {
	for k, v := range h {
		if strings.HasPrefix(k, prefix) {
			fn(k, v)
		}
	}
}

// rawHeaders reads Envoy's "header_map" (encode_raw_headers): one entry per header line. It is
// used by pointer, so that holding it in policy.Headers costs no allocation.
type rawHeaders struct{ h []*corev3.HeaderValue }

func (h *rawHeaders) Get(name string) (string, int) {
	var first string
	n := 0
	for _, hv := range h.h {
		if hv.GetKey() != name {
			continue
		}
		if n == 0 {
			first = headerValue(hv)
		}
		n++
	}
	return first, n
}

// EachWithPrefix implements policy.HeaderLister: every line, repeated names included.
func (h *rawHeaders) EachWithPrefix(prefix string, fn func(name, value string)) {
	for _, hv := range h.h {
		if strings.HasPrefix(hv.GetKey(), prefix) {
			fn(hv.GetKey(), headerValue(hv))
		}
	}
}

// headerValue is a header line's value. A raw value is viewed, not copied: nothing writes to a
// CheckRequest while it is decided, and Envoy fills raw_value with encode_raw_headers, so every
// header read would otherwise cost an allocation.
func headerValue(hv *corev3.HeaderValue) string {
	if raw := hv.GetRawValue(); len(raw) > 0 {
		return unsafe.String(unsafe.SliceData(raw), len(raw))
	}
	return hv.GetValue()
}

var (
	_ policy.Headers      = mapHeaders(nil)
	_ policy.Headers      = (*rawHeaders)(nil)
	_ policy.HeaderLister = mapHeaders(nil)
	_ policy.HeaderLister = (*rawHeaders)(nil)
)

// malformed is a deny for a CheckRequest that Envoy could not have sent.
func malformed(detail string) *decision.Decision {
	d := decision.Denied(decision.CodeRequestMalformed, detail)
	return &d
}

// ReadRequest reads a CheckRequest as Envoy fills it into the engine's facts. A request whose
// parts are missing or contradict each other is returned with Unreadable set: Envoy could not
// have sent it, and the engine refuses it.
func ReadRequest(cr *authv3.CheckRequest) engine.Request {
	st := &checkState{}
	st.read(cr)
	return st.req
}

// checkState is what one check reads, in one allocation: the facts and the header reader they
// point to.
type checkState struct {
	req engine.Request
	raw rawHeaders
}

func (st *checkState) read(cr *authv3.CheckRequest) {
	attrs := cr.GetAttributes()
	httpReq := attrs.GetRequest().GetHttp()
	// Identity comes from the peer certificate Envoy verified, never from request headers.
	r := &st.req
	r.Principal = attrs.GetSource().GetPrincipal()
	if deny := read(httpReq, r, &st.raw); deny != nil {
		r.Unreadable = deny
	}
	r.RequestID = requestID(httpReq, r.Headers)
}

// maxRequestIDLen bounds the x-request-id agentauthz records; Envoy's are 36-byte UUIDs.
const maxRequestIDLen = 128

// requestID is the request's x-request-id, which Envoy generates for every request (the shipped
// configurations: generate_request_id, preserve_external_request_id off) and writes in its
// access log as request_id, so that the two logs join on it. Without one usable x-request-id it
// is Envoy's stream id (http.id), which appears nowhere else.
func requestID(httpReq *authv3.AttributeContext_HttpRequest, h policy.Headers) string {
	if h != nil {
		if v, n := h.Get("x-request-id"); n == 1 && v != "" && len(v) <= maxRequestIDLen {
			return v
		}
	}
	return httpReq.GetId()
}

func read(httpReq *authv3.AttributeContext_HttpRequest, r *engine.Request, raw *rawHeaders) *decision.Decision {
	if httpReq == nil {
		return malformed("The check carries no HTTP request attributes.")
	}
	if len(httpReq.GetHeaders()) > 0 && httpReq.GetHeaderMap() != nil {
		return malformed("The check carries both headers and header_map.")
	}
	if hm := httpReq.GetHeaderMap(); hm != nil {
		raw.h = hm.GetHeaders()
		r.Headers = raw
	} else {
		r.Headers = mapHeaders(httpReq.GetHeaders())
	}

	r.Method = httpReq.GetMethod()
	r.Host = httpReq.GetHost()
	r.Target = httpReq.GetPath()
	// The pseudo-headers, when present, must say the same as the fields: a disagreement means
	// two readers of this request could see two different requests.
	for _, pair := range [...]struct{ header, field string }{
		{":method", r.Method}, {":path", r.Target}, {":authority", r.Host},
	} {
		v, n := r.Headers.Get(pair.header)
		switch {
		case n > 1:
			return malformed("The request repeats " + pair.header + ".")
		case n == 1 && pair.field == "":
			// Older Envoys leave some fields empty; the pseudo-header is then authoritative.
			switch pair.header {
			case ":method":
				r.Method = v
			case ":path":
				r.Target = v
			case ":authority":
				r.Host = v
			}
		case n == 1 && v != pair.field:
			return malformed("The request's " + pair.header + " header contradicts its attributes.")
		}
	}
	if _, n := r.Headers.Get("host"); n > 0 {
		if v, _ := r.Headers.Get("host"); n > 1 || !target.EqualFoldASCII(v, r.Host) {
			return malformed("The request's host header contradicts its :authority.")
		}
	}
	if r.Method == "" || r.Target == "" || r.Host == "" {
		return malformed("The request lacks a method, path or host.")
	}

	switch {
	case httpReq.GetBody() != "" && len(httpReq.GetRawBody()) > 0:
		return malformed("The check carries both body and raw_body.")
	case len(httpReq.GetRawBody()) > 0:
		r.Body = httpReq.GetRawBody()
	case httpReq.GetBody() != "":
		// A view of the string, not a copy: nothing downstream writes to a request body.
		r.Body = unsafe.Slice(unsafe.StringData(httpReq.GetBody()), len(httpReq.GetBody()))
	}
	if v, n := r.Headers.Get(PartialBodyHeader); n > 0 {
		switch {
		case n > 1 || (v != "true" && v != "false"):
			return malformed("The request carries a malformed " + PartialBodyHeader + " header.")
		case v == "true":
			r.BodyPartial = true
		}
	}
	return nil
}
