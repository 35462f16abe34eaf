package authzen_test

import (
	"bytes"
	"io"
	"net/http"
	"testing"

	"github.com/agentauthz/agentauthz/authzen"
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
