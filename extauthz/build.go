package extauthz

import (
	"slices"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// HTTPRequest describes a request as an agent sends it through Envoy, for offline checks and
// tests.
type HTTPRequest struct {
	Principal string            `yaml:"principal" json:"principal"` // the SPIFFE ID of the agent's certificate
	Method    string            `yaml:"method" json:"method"`       // default GET
	Host      string            `yaml:"host" json:"host"`
	Path      string            `yaml:"path" json:"path"` // raw, with the query
	Headers   map[string]string `yaml:"headers" json:"headers"`
	Body      string            `yaml:"body" json:"body"`
	// Protocol is "HTTP/1.1" (the default) or "HTTP/2", whose clients order the pseudo-headers
	// their own way and need not send content-length (gRPC clients never do).
	Protocol string `yaml:"protocol" json:"protocol"`
}

// What the builder puts where Envoy puts values of its own: the agent's address (a
// documentation address) and the x-request-id Envoy generates.
const (
	BuiltPeerAddress = "192.0.2.2"
	BuiltRequestID   = "00000000-0000-4000-8000-000000000000"
)

// CheckRequest builds the CheckRequest Envoy 1.40 sends for r through the shipped configurations
// (envoy/front-proxy.yaml: encode_raw_headers, with_request_body with pack_as_bytes): the
// headers in header_map, one entry each, values in raw_value; first the pseudo-headers
// (HTTP/1.1: :authority, :path, :method, :scheme), then the agent's headers in name order
// (lower-cased), content-length for an HTTP/1.1 body, then what Envoy adds (x-forwarded-for,
// x-forwarded-proto, x-envoy-external-address, x-request-id) and, with a body, the body in
// raw_body and x-envoy-auth-partial-body: false last. envoy/testdata/checkrequests has what
// Envoy really sends; envoy/fixtures_test.go holds the two together.
//
// As Envoy does, it sends no host entry (an HTTP/1.1 Host header is :authority, here r.Host),
// and never the agent's own x-envoy-auth-partial-body; x-forwarded-for gets the agent's
// address appended, and x-forwarded-proto and x-request-id are Envoy's.
func (r HTTPRequest) CheckRequest() *authv3.CheckRequest {
	method := r.Method
	if method == "" {
		method = "GET"
	}
	hm := &corev3.HeaderMap{}
	add := func(k, v string) { hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: k, RawValue: []byte(v)}) }
	h2 := r.Protocol == "HTTP/2"
	if h2 {
		// As Go's HTTP/2 client sends them.
		add(":authority", r.Host)
		add(":method", method)
		add(":path", r.Path)
	} else {
		// As Envoy's HTTP/1.1 codec fills them.
		add(":authority", r.Host)
		add(":path", r.Path)
		add(":method", method)
	}
	add(":scheme", "https")
	names := make([]string, 0, len(r.Headers))
	agent := make(map[string]string, len(r.Headers))
	for k, v := range r.Headers {
		k = strings.ToLower(k)
		if prev, ok := agent[k]; ok {
			v = prev + "," + v
		} else {
			names = append(names, k)
		}
		agent[k] = v
	}
	slices.Sort(names)
	xff := BuiltPeerAddress
	for _, k := range names {
		switch k {
		case "host", PartialBodyHeader, "x-forwarded-proto", "x-request-id", "x-envoy-external-address", "x-envoy-internal":
			// Envoy's to set, or never sent.
		case "x-forwarded-for":
			xff = agent[k] + "," + BuiltPeerAddress
		default:
			add(k, agent[k])
		}
	}
	if _, ok := agent["content-length"]; !ok && r.Body != "" && !h2 {
		add("content-length", strconv.Itoa(len(r.Body)))
	}
	add("x-forwarded-for", xff)
	add("x-forwarded-proto", "https")
	add("x-envoy-external-address", BuiltPeerAddress)
	add("x-request-id", BuiltRequestID)
	protocol := "HTTP/1.1"
	if h2 {
		protocol = r.Protocol
	}
	httpReq := &authv3.AttributeContext_HttpRequest{
		Method: method, Host: r.Host, Path: r.Path, Scheme: "https", Protocol: protocol,
		HeaderMap: hm, Size: int64(len(r.Body)),
	}
	if r.Body != "" {
		httpReq.RawBody = []byte(r.Body)
		add(PartialBodyHeader, "false")
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Principal: r.Principal, Address: &corev3.Address{
			Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{Address: BuiltPeerAddress}},
		}},
		Request: &authv3.AttributeContext_Request{Http: httpReq},
	}}
}

// RawHeaders moves a CheckRequest's headers map, if it has one, into header_map, as Envoy does
// with encode_raw_headers, in name order; a CheckRequest with header_map already is left alone.
func RawHeaders(cr *authv3.CheckRequest) {
	httpReq := cr.GetAttributes().GetRequest().GetHttp()
	if httpReq.GetHeaderMap() != nil && len(httpReq.GetHeaders()) == 0 {
		return
	}
	keys := make([]string, 0, len(httpReq.Headers))
	for k := range httpReq.Headers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	hm := &corev3.HeaderMap{}
	for _, k := range keys {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: k, RawValue: []byte(httpReq.Headers[k])})
	}
	httpReq.Headers, httpReq.HeaderMap = nil, hm
}

// MapHeaders moves a CheckRequest's header_map into the headers map, as Envoy sends headers
// with encode_raw_headers off: repeated headers joined by ",".
func MapHeaders(cr *authv3.CheckRequest) {
	httpReq := cr.GetAttributes().GetRequest().GetHttp()
	if httpReq.GetHeaderMap() == nil {
		return
	}
	m := make(map[string]string, len(httpReq.GetHeaderMap().GetHeaders()))
	for _, hv := range httpReq.GetHeaderMap().GetHeaders() {
		v := headerValue(hv)
		if prev, ok := m[hv.GetKey()]; ok {
			v = prev + "," + v
		}
		m[hv.GetKey()] = v
	}
	httpReq.Headers, httpReq.HeaderMap = m, nil
}
