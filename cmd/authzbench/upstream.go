package main

import (
	"crypto/tls"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// upstreamAnswer is what the upstream answers a request for path with: a small JSON body that
// the demo policy's response rules (the ticket's and the BI API's views) pass unchanged, so that
// an answer arriving changed, or refused, through agentauthz-guarded is seen by verifyHTTP. The
// response guard still reads every such answer: its ext_proc round trip is what that set-up
// adds.
func upstreamAnswer(path string) string {
	switch path {
	case "/v1/tickets/4711":
		return `{"id":4711,"subject":"VPN down","status":"open"}`
	case "/graphql":
		return `{"data":{"revenue":{"total":1}}}`
	}
	return `{"ok":true}`
}

// upstream is the trivial fast upstream: SPIFFE mTLS as the helpdesk and BI backends serve it
// (admitting only Envoy), it reads the request and answers 200 with a small JSON body.
type upstream struct{ requests atomic.Int64 }

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	u.requests.Add(1)
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, upstreamAnswer(r.URL.Path))
}

// serve starts a listener with svid, and returns its address.
func (u *upstream) serve(svid *x509svid.SVID, bundles *x509bundle.Set) (string, error) {
	cfg := tlsconfig.MTLSServerConfig(svid, bundles, tlsconfig.AuthorizeID(envoyID))
	cfg.NextProtos = []string{"http/1.1"}
	lis, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: u, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(lis) }()
	return lis.Addr().String(), nil
}
