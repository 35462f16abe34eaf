package extauthz

import (
	"sort"
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
}

// CheckRequest builds the CheckRequest Envoy's ext_authz filter would send for r: lower-case
// headers including the pseudo-headers, the raw path, the body and the partial-body marker.
func (r HTTPRequest) CheckRequest() *authv3.CheckRequest {
	method := r.Method
	if method == "" {
		method = "GET"
	}
	h := map[string]string{":authority": r.Host, ":method": method, ":path": r.Path, ":scheme": "https"}
	if r.Body != "" {
		h["content-length"] = strconv.Itoa(len(r.Body))
		h[PartialBodyHeader] = "false"
	}
	for k, v := range r.Headers {
		k = strings.ToLower(k)
		if prev, ok := h[k]; ok && !strings.HasPrefix(k, ":") {
			v = prev + "," + v
		}
		h[k] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Principal: r.Principal},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Host: r.Host, Path: r.Path, Scheme: "https", Protocol: "HTTP/1.1",
			Headers: h, Body: r.Body, Size: int64(len(r.Body)),
		}},
	}}
}

// RawHeaders moves a CheckRequest's headers into header_map, as Envoy does with
// encode_raw_headers, in name order.
func RawHeaders(cr *authv3.CheckRequest) {
	httpReq := cr.GetAttributes().GetRequest().GetHttp()
	keys := make([]string, 0, len(httpReq.Headers))
	for k := range httpReq.Headers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	hm := &corev3.HeaderMap{}
	for _, k := range keys {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: k, RawValue: []byte(httpReq.Headers[k])})
	}
	httpReq.Headers, httpReq.HeaderMap = nil, hm
}
