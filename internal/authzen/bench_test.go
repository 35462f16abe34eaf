package authzen_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/agentauthz/agentauthz/internal/authzen"
	"github.com/agentauthz/agentauthz/internal/engine"
	"github.com/agentauthz/agentauthz/internal/servertest"
)

// BenchmarkEvaluationLoopback: one Access Evaluation over loopback HTTP/1.1 (a kept-alive
// connection) to a real server: the helpdesk agent's comment, a JSON body checked against its
// schema, allowed. Allocations count the client's as well as the server's.
func BenchmarkEvaluationLoopback(b *testing.B) {
	p := startPDP(b)
	body := []byte(jsonText(b, httpEval(helpdesk, "POST", helpdeskAt+"/v1/tickets/4711/comments",
		bodyCtx(comment, "content-type", jsonType, "authorization", "Bearer agent-own-token"))))
	url := p.base + authzen.EvaluationPath
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	ask := func() []byte {
		req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+pepToken)
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		out, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("%d %v %s", resp.StatusCode, err, out)
		}
		return out
	}
	if out := ask(); !bytes.HasPrefix(out, []byte(`{"decision":true`)) {
		b.Fatalf("not allowed: %s", out)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		ask()
	}
}

// BenchmarkServeEvaluation: the same evaluation through the handler in process, without the
// network or the client: the server's own cost (reading the request, deciding, answering).
func BenchmarkServeEvaluation(b *testing.B) {
	store, _ := servertest.DemoStore(b, credential)
	mux := http.NewServeMux()
	authzen.New(engine.New(engine.Config{Store: store}), authzen.Config{Tokens: authzen.NewTokens(map[string]string{pepToken: "bench"})}).Register(mux)
	body := []byte(jsonText(b, httpEval(helpdesk, "POST", helpdeskAt+"/v1/tickets/4711/comments",
		bodyCtx(comment, "content-type", jsonType, "authorization", "Bearer agent-own-token"))))
	header := http.Header{"Content-Type": {"application/json"}, "Authorization": {"Bearer " + pepToken}}
	w := &discard{h: http.Header{}}
	b.ReportAllocs()
	for range b.N {
		req := httptest.NewRequest(http.MethodPost, authzen.EvaluationPath, bytes.NewReader(body))
		req.Header = header
		clear(w.h)
		w.status = 0
		mux.ServeHTTP(w, req)
		if w.status != 200 {
			b.Fatalf("status %d", w.status)
		}
	}
}

// discard is a ResponseWriter that keeps only the status.
type discard struct {
	h      http.Header
	status int
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(status int)      { d.status = status }
