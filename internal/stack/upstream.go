package stack

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
)

// Received is one request as an upstream API received it from Envoy.
type Received struct {
	Method string
	// URI is the request target as sent, query included.
	URI    string
	Host   string
	Header http.Header
	Body   []byte
	// Peer is the SPIFFE ID of the client certificate: Envoy's.
	Peer string
	// Status and Response are what the upstream answered (its status and the body it wrote),
	// filled in once the handler returns: what was sent, to compare with what the agent got.
	Status   int
	Response []byte
}

// Upstream serves an API over TLS with SPIFFE mTLS, as the shipped front proxy reaches its
// backends, and records every request that reaches it before the API sees it.
type Upstream struct {
	srv  *http.Server
	addr string

	mu   sync.Mutex
	reqs []Received
}

// StartUpstream serves h over TLS with tlsConf on a loopback port, recording every request,
// until the test ends: an upstream whose certificate comes from elsewhere than the stack's PKI
// (a real SPIRE agent's Workload API, for one).
func StartUpstream(t testing.TB, h http.Handler, tlsConf *tls.Config) *Upstream {
	t.Helper()
	return startUpstream(t, h, tlsConf)
}

func startUpstream(t testing.TB, h http.Handler, tlsConf *tls.Config) *Upstream {
	t.Helper()
	u := &Upstream{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.addr = l.Addr().String()
	u.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec := Received{Method: r.Method, URI: r.RequestURI, Host: r.Host, Header: r.Header.Clone(), Body: body}
		if r.TLS != nil {
			rec.Peer = URISAN(r.TLS.PeerCertificates)
		}
		u.mu.Lock()
		i := len(u.reqs)
		u.reqs = append(u.reqs, rec)
		u.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		rw := &recorder{ResponseWriter: w}
		h.ServeHTTP(rw, r)
		u.mu.Lock()
		u.reqs[i].Status, u.reqs[i].Response = rw.status, rw.body.Bytes()
		if u.reqs[i].Status == 0 {
			u.reqs[i].Status = http.StatusOK
		}
		u.mu.Unlock()
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = u.srv.Serve(tls.NewListener(l, tlsConf)) }()
	t.Cleanup(func() { u.srv.Close() })
	return u
}

// Addr is where the upstream listens.
func (u *Upstream) Addr() string { return u.addr }

// Received returns every request received so far, in order.
func (u *Upstream) Received() []Received {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.reqs)
}

// Count is how many requests were received so far.
func (u *Upstream) Count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

// recorder keeps a copy of what a handler writes. It passes Flush on, for event streams.
type recorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	r.body.Write(b)
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
