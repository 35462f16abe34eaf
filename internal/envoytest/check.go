package envoytest

import (
	"errors"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// PartialBodyHeader is what Envoy adds to the check of a request whose body it buffered.
const PartialBodyHeader = "x-envoy-auth-partial-body"

// header is one header line, its name lower-cased as Envoy keeps it.
type header struct{ key, value string }

// request is the request as Envoy's header map holds it: the pseudo-headers first, then one
// entry per header line.
type request struct {
	authority, path, method string
	headers                 []header
}

func (q *request) has(key string) bool {
	for _, h := range q.headers {
		if h.key == key {
			return true
		}
	}
	return false
}

func (q *request) add(key, value string) { q.headers = append(q.headers, header{key, value}) }

// set replaces the first entry of key and drops the others, or adds one.
func (q *request) set(key, value string) {
	out := q.headers[:0]
	done := false
	for _, h := range q.headers {
		if h.key != key {
			out = append(out, h)
			continue
		}
		if !done {
			out = append(out, header{key, value})
			done = true
		}
	}
	q.headers = out
	if !done {
		q.add(key, value)
	}
}

// appendValue joins value to the first entry of key with ",", or adds one (appendCopy).
func (q *request) appendValue(key, value string) {
	for i, h := range q.headers {
		if h.key == key {
			q.headers[i].value = h.value + "," + value
			return
		}
	}
	q.add(key, value)
}

func (q *request) remove(key string) {
	out := q.headers[:0]
	for _, h := range q.headers {
		if h.key != key {
			out = append(out, h)
		}
	}
	q.headers = out
}

// incoming reads r into Envoy's header map. HTTP/1's Host becomes :authority; the path is the
// request target exactly as received.
func (p *Proxy) incoming(r *http.Request) (*request, error) {
	path := r.RequestURI
	if !strings.HasPrefix(path, "/") {
		// An absolute-form target: Envoy takes its path and query.
		if r.URL == nil || r.URL.Host == "" {
			return nil, errors.New("envoytest: unsupported request target")
		}
		path = r.URL.EscapedPath()
		if r.URL.RawQuery != "" || r.URL.ForceQuery {
			path += "?" + r.URL.RawQuery
		}
	}
	authority := r.Host
	if p.cfg.StripAnyHostPort {
		authority = hostOnly(authority)
	}
	q := &request{authority: authority, path: path, method: r.Method}
	q.add(":authority", authority)
	q.add(":path", path)
	q.add(":method", r.Method)
	q.add(":scheme", p.cfg.Scheme)
	names := make([]string, 0, len(r.Header))
	for k := range r.Header {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		lk := strings.ToLower(k)
		if lk == "host" {
			continue
		}
		for _, v := range r.Header[k] {
			q.add(lk, v)
		}
	}
	if len(r.TransferEncoding) > 0 && !q.has("transfer-encoding") {
		q.add("transfer-encoding", strings.Join(r.TransferEncoding, ","))
	}
	if r.ContentLength > 0 && !q.has("content-length") {
		q.add("content-length", strconv.FormatInt(r.ContentLength, 10))
	}
	return q, nil
}

// buffered is the body the filter held for the check.
type buffered struct {
	data    []byte // what was read: forwarded first, then the rest of the body
	check   []byte // what the check carries
	partial bool
	present bool // the request has a body and with_request_body is on
}

// buffer reads the body as with_request_body does. tooLarge means Envoy would answer 413.
func (p *Proxy) buffer(r *http.Request) (b buffered, tooLarge bool, err error) {
	opts := p.cfg.WithRequestBody
	// Envoy buffers only when the headers did not end the stream: a body may follow.
	if opts == nil || r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return b, false, nil
	}
	limit := int64(opts.MaxRequestBytes)
	if !opts.AllowPartialMessage && r.ContentLength > limit {
		return b, true, nil
	}
	b.present = true
	b.data, err = io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return b, false, err
	}
	b.check = b.data
	if int64(len(b.data)) > limit {
		if !opts.AllowPartialMessage {
			return b, true, nil
		}
		b.check, b.partial = b.data[:limit], true
	}
	return b, false, nil
}

// checkRequest fills the CheckRequest as the ext_authz filter does.
func (p *Proxy) checkRequest(r *http.Request, q *request, b buffered) *authv3.CheckRequest {
	hr := &authv3.AttributeContext_HttpRequest{
		Id:       strconv.FormatUint(p.streamID.Add(1), 10),
		Method:   q.method,
		Path:     q.path,
		Host:     q.authority,
		Scheme:   p.cfg.Scheme,
		Protocol: r.Proto,
		Size:     int64(len(b.data)),
	}
	headers := append([]header(nil), q.headers...)
	if b.present {
		headers = append(headers, header{PartialBodyHeader, strconv.FormatBool(b.partial)})
		if p.cfg.WithRequestBody.PackAsBytes {
			hr.RawBody = append([]byte(nil), b.check...)
		} else {
			hr.Body = string(b.check)
		}
	}
	if p.cfg.EncodeRawHeaders {
		hm := &corev3.HeaderMap{}
		for _, h := range headers {
			hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: h.key, RawValue: []byte(h.value)})
		}
		hr.HeaderMap = hm
	} else {
		hr.Headers = make(map[string]string, len(headers))
		for _, h := range headers {
			if prev, ok := hr.Headers[h.key]; ok {
				hr.Headers[h.key] = prev + "," + h.value
			} else {
				hr.Headers[h.key] = h.value
			}
		}
	}
	src := &authv3.AttributeContext_Peer{Principal: p.cfg.Principal, Address: socketAddress(r.RemoteAddr)}
	dst := &authv3.AttributeContext_Peer{Principal: p.cfg.LocalPrincipal}
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		dst.Address = socketAddress(a.String())
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      src,
		Destination: dst,
		Request:     &authv3.AttributeContext_Request{Time: timestamppb.Now(), Http: hr},
	}}
}

func socketAddress(hostport string) *corev3.Address {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil
	}
	n, err := strconv.ParseUint(port, 10, 32)
	if err != nil {
		return nil
	}
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(n)},
	}}}
}
