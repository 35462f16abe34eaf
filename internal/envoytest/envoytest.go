// Package envoytest is a stand-in for Envoy's HTTP ext_authz filter in front of a router, for
// TESTS ONLY. It is never shipped as a product feature: agentauthz is deployed behind a real
// Envoy (see compose/envoy.yaml), and nothing outside tests and local demos may use this package.
//
// A Proxy is an http.Handler that, for each request, does what Envoy's front door does:
//
//   - it builds the CheckRequest the way the ext_authz filter fills it (check.go):
//     attributes.source.principal from a configured SPIFFE ID, standing in for the URI SAN of the
//     mTLS peer certificate Envoy verified; lower-case header names including :authority,
//     :method, :path and :scheme; the raw path with its query; the buffered body (body, or
//     raw_body with pack_as_bytes) up to max_request_bytes with x-envoy-auth-partial-body; the
//     headers in header_map instead of the headers map with encode_raw_headers;
//   - it calls Check over gRPC with a deadline (the grpc_service timeout);
//   - it applies the answer (apply.go): on OK, the header mutations with their append_action,
//     then headers_to_remove (never a pseudo-header nor host), query_parameters_to_set and
//     query_parameters_to_remove, and forwards to the upstream chosen by host; on a denial, the
//     denied response's status (403 when unset), headers and body go to the client; on a gRPC
//     error, an error_response or a timeout, the client gets status_on_error (503 here) and the
//     upstream nothing (failure_mode_allow is false).
//
// What it does not model: TLS itself (the principal is configured, not verified), HTTP/2,
// header order across different names (Go's server does not keep it; names are sorted), route
// matching beyond exact host names, and Envoy's own header handling beyond an edge proxy's
// x-request-id, x-forwarded-proto and x-forwarded-for.
package envoytest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// BodyOptions mirror the ext_authz filter's with_request_body.
type BodyOptions struct {
	// MaxRequestBytes is how much of the body the check carries (max_request_bytes).
	MaxRequestBytes uint32
	// AllowPartialMessage sends the first MaxRequestBytes of a longer body, marked partial;
	// without it a longer body is answered 413 without a check.
	AllowPartialMessage bool
	// PackAsBytes sends the body in raw_body instead of body.
	PackAsBytes bool
}

// Config configures a Proxy. Client, Principal and Upstreams are required.
type Config struct {
	// Client calls the ext_authz server.
	Client authv3.AuthorizationClient
	// Principal is the SPIFFE ID of the client's certificate, which Envoy would have verified.
	// Every request through this Proxy carries it as attributes.source.principal.
	Principal string
	// LocalPrincipal is Envoy's own SPIFFE ID (attributes.destination.principal); optional.
	LocalPrincipal string
	// Upstreams maps a host name (no port; matched case-insensitively) to the base URL of its
	// upstream, e.g. "helpdesk.acme.internal" → "http://127.0.0.1:8081".
	Upstreams map[string]string
	// WithRequestBody buffers bodies into the check; nil sends no body.
	WithRequestBody *BodyOptions
	// EncodeRawHeaders sends the headers in header_map, one entry per header line.
	EncodeRawHeaders bool
	// RejectHeadersWithUnderscores answers 400 to a request with an underscore in a header name,
	// like headers_with_underscores_action: REJECT_REQUEST.
	RejectHeadersWithUnderscores bool
	// StripAnyHostPort removes a port from :authority before anything sees it, like the
	// connection manager's strip_any_host_port.
	StripAnyHostPort bool
	// Scheme is :scheme; the stand-in plays an mTLS listener, so "https" by default.
	Scheme string
	// Timeout bounds one Check (the grpc_service timeout); 1s when zero.
	Timeout time.Duration
	// StatusOnError answers a failed check (status_on_error); 503 when zero.
	StatusOnError int
	// Transport reaches the upstreams; nil means http.DefaultTransport.
	Transport http.RoundTripper
	// Observe, when set, is told about every check: for tests that inspect what was sent.
	Observe func(*authv3.CheckRequest, *authv3.CheckResponse, error)
	// Log receives one line per request; nil discards.
	Log *slog.Logger
}

// Proxy is the Envoy stand-in. It is safe for concurrent use.
type Proxy struct {
	cfg       Config
	upstreams map[string]*url.URL
	proxy     *httputil.ReverseProxy
	streamID  atomic.Uint64
}

// New checks cfg and returns a Proxy.
func New(cfg Config) (*Proxy, error) {
	if cfg.Client == nil {
		return nil, errors.New("envoytest: Config.Client is required")
	}
	if cfg.Principal == "" {
		return nil, errors.New("envoytest: Config.Principal is required (the client's SPIFFE ID)")
	}
	if b := cfg.WithRequestBody; b != nil && b.MaxRequestBytes == 0 {
		return nil, errors.New("envoytest: WithRequestBody.MaxRequestBytes must be positive")
	}
	if cfg.Scheme == "" {
		cfg.Scheme = "https"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = time.Second
	}
	if cfg.StatusOnError == 0 {
		cfg.StatusOnError = http.StatusServiceUnavailable
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	p := &Proxy{cfg: cfg, upstreams: map[string]*url.URL{}}
	for host, base := range cfg.Upstreams {
		u, err := url.Parse(base)
		if err != nil || u.Scheme == "" || u.Host == "" {
			return nil, fmt.Errorf("envoytest: upstream of %s: %q is not an absolute URL", host, base)
		}
		p.upstreams[strings.ToLower(host)] = u
	}
	p.proxy = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      cfg.Transport,
		ModifyResponse: modifyResponse,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			cfg.Log.Warn("upstream failed", "host", r.Host, "error", err.Error())
			localReply(w, http.StatusServiceUnavailable, nil, "upstream connect error or disconnect/reset before headers")
		},
	}
	return p, nil
}

// MustNew is New for tests: it panics on a bad Config.
func MustNew(cfg Config) *Proxy {
	p, err := New(cfg)
	if err != nil {
		panic(err)
	}
	return p
}

// forward is what travels from ServeHTTP to rewrite: the request as the ext_authz filter left it.
type forward struct {
	target  *url.URL
	path    string // the :path to send, raw
	headers []header
}

type forwardKey struct{}

// ServeHTTP checks the request with ext_authz and forwards or refuses it.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	in, err := p.incoming(r)
	if err != nil {
		localReply(w, http.StatusBadRequest, nil, "Bad Request")
		return
	}
	if p.cfg.RejectHeadersWithUnderscores {
		for _, h := range in.headers {
			if strings.Contains(h.key, "_") {
				localReply(w, http.StatusBadRequest, nil, "Bad Request")
				return
			}
		}
	}
	// The connection manager's own headers, before any filter runs, as an edge Envoy
	// (use_remote_address, generate_request_id, no preserve_external_request_id) sets them.
	in.set("x-request-id", newRequestID())
	in.set("x-forwarded-proto", p.cfg.Scheme)
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		in.appendValue("x-forwarded-for", host)
	}

	body, tooLarge, err := p.buffer(r)
	if err != nil {
		localReply(w, http.StatusBadRequest, nil, "Bad Request")
		return
	}
	if tooLarge {
		// Envoy's buffer limit: answered before any check.
		localReply(w, http.StatusRequestEntityTooLarge, nil, "Payload Too Large")
		return
	}

	cr := p.checkRequest(r, in, body)
	ctx, cancel := context.WithTimeout(r.Context(), p.cfg.Timeout)
	resp, err := p.cfg.Client.Check(ctx, cr)
	cancel()
	if p.cfg.Observe != nil {
		p.cfg.Observe(cr, resp, err)
	}
	if err != nil {
		p.cfg.Log.Warn("ext_authz check failed; answering status_on_error", "error", err.Error())
		localReply(w, p.cfg.StatusOnError, nil, "")
		return
	}
	switch outcome(resp) {
	case outcomeError:
		er := resp.GetErrorResponse()
		status := p.cfg.StatusOnError
		if c := int(er.GetStatus().GetCode()); c > 0 {
			status = c
		}
		localReply(w, status, er.GetHeaders(), er.GetBody())
		return
	case outcomeDenied:
		dr := resp.GetDeniedResponse()
		status := http.StatusForbidden
		if c := int(dr.GetStatus().GetCode()); c > 0 {
			status = c
		}
		p.cfg.Log.Info("denied", "host", in.authority, "path", in.path, "status", status)
		localReply(w, status, dr.GetHeaders(), dr.GetBody())
		return
	}

	ok := resp.GetOkResponse()
	applyRequestHeaders(in, ok.GetHeaders())
	removeRequestHeaders(in, ok.GetHeadersToRemove())
	path := applyQuery(in.path, ok.GetQueryParametersToSet(), ok.GetQueryParametersToRemove())

	target, found := p.upstreams[strings.ToLower(hostOnly(in.authority))]
	if !found {
		localReply(w, http.StatusNotFound, nil, "") // no route: Envoy's router answers 404
		return
	}
	p.cfg.Log.Info("allowed", "host", in.authority, "path", path)
	fw := &forward{target: target, path: path, headers: in.headers}
	out := r.WithContext(context.WithValue(r.Context(), forwardKey{}, fw))
	if body.present {
		out.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body.data), r.Body))
	}
	if add := ok.GetResponseHeadersToAdd(); len(add) > 0 {
		out = out.WithContext(context.WithValue(out.Context(), responseHeadersKey{}, add))
	}
	p.proxy.ServeHTTP(w, out)
}

// rewrite builds the upstream request from what the filter left.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	fw := pr.In.Context().Value(forwardKey{}).(*forward)
	u := *fw.target
	rawPath, rawQuery, _ := strings.Cut(fw.path, "?")
	u.RawQuery = rawQuery
	if decoded, err := url.PathUnescape(rawPath); err == nil {
		u.Path, u.RawPath = strings.TrimSuffix(fw.target.Path, "/")+decoded, strings.TrimSuffix(fw.target.EscapedPath(), "/")+rawPath
	} else {
		u.Opaque = rawPath // keep what cannot be decoded exactly as it came
	}
	pr.Out.URL = &u
	pr.Out.Header = http.Header{}
	for _, h := range fw.headers {
		if strings.HasPrefix(h.key, ":") || hopByHop[h.key] {
			continue
		}
		pr.Out.Header.Add(h.key, h.value)
	}
	pr.Out.Host = authorityOf(fw)
}

// hopByHop headers are the connection's, not the request's: Envoy never forwards them.
var hopByHop = map[string]bool{
	"connection": true, "keep-alive": true, "proxy-connection": true, "te": true,
	"trailer": true, "transfer-encoding": true, "upgrade": true,
}

// authorityOf is the Host the upstream sees: the request's :authority, as Envoy forwards it
// without host_rewrite.
func authorityOf(fw *forward) string {
	for _, h := range fw.headers {
		if h.key == ":authority" {
			return h.value
		}
	}
	return ""
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	s := hex.EncodeToString(b[:])
	return s[:8] + "-" + s[8:12] + "-" + s[12:16] + "-" + s[16:20] + "-" + s[20:]
}

// hostOnly drops a port from an authority.
func hostOnly(authority string) string {
	if h, _, err := net.SplitHostPort(authority); err == nil {
		return h
	}
	return authority
}

// localReply is Envoy's sendLocalReply: status, the given header mutations, and the body
// (text/plain when there is one and no content-type was given).
func localReply(w http.ResponseWriter, status int, headers headerOptions, body string) {
	h := w.Header()
	applyResponseHeaders(h, headers)
	if body != "" && h.Get("content-type") == "" {
		h.Set("content-type", "text/plain")
	}
	h.Set("content-length", fmt.Sprint(len(body)))
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body) // the client went away; nothing to do
}
