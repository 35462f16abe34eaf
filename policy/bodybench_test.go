package policy_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauthz/agentauthz/policy"
	"github.com/agentauthz/agentauthz/policy/decision"
)

var benchBodySizes = []struct {
	name string
	n    int
}{{"1KB", 1 << 10}, {"16KB", 16 << 10}, {"256KB", 256 << 10}}

// benchText is comment-like text of n bytes, with some escapes and non-ASCII, as a JSON string
// literal's content.
func benchText(n int) string {
	const para = `The printer on floor 3 is out of toner again \u2014 \"urgent\".\nCaf\u00e9 r\u00e9sum\u00e9 ok. `
	s := strings.Repeat(para, n/len(para)+1)
	s = s[:n]
	// Do not end inside an escape.
	if i := strings.LastIndexByte(s, '\\'); i >= len(s)-6 && i >= 0 {
		s = s[:i] + strings.Repeat("x", len(s)-i)
	}
	return s
}

// benchComment is a comment body of n bytes for the JSON Schema route.
func benchComment(n int) []byte {
	const frame = len(`{"body":""}`)
	return []byte(`{"body":"` + benchText(n-frame) + `"}`)
}

// benchTags is a Note body of about n bytes: a title and many short tags.
func benchTags(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"title":"bench","tags":[`)
	for i := 0; b.Len() < n-16; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"tag-%06d"`, i)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// benchLongText is a Note body of about n bytes: a title and one long string.
func benchLongText(n int) []byte {
	const frame = len(`{"title":"bench","text":""}`)
	return []byte(`{"title":"bench","text":"` + benchText(n-frame) + `"}`)
}

func benchRequest(target, contentType string, body []byte) *policy.Request {
	return &policy.Request{
		Agent:   spiffeid.RequireFromString(bodyAgent),
		Method:  "POST",
		Host:    bodyHost,
		Target:  target,
		Headers: hdrs{"content-type": {contentType}, "content-length": {fmt.Sprint(len(body))}},
		Body:    body,
	}
}

func benchDecide(b *testing.B, snap *policy.Snapshot, r *policy.Request) {
	b.Helper()
	// Each decision gets a request of its own, as each request does: nothing a decision read
	// from the body is there for the next.
	tmpl := *r
	if d := snap.Decide(r); d.Code != decision.CodeAllowed {
		b.Fatalf("%s %s: %s %s %+v", r.Method, r.Target, d.Code, d.Detail, d.Violations)
	}
	b.SetBytes(int64(len(r.Body)))
	b.ReportAllocs()
	for b.Loop() {
		r := tmpl
		if d := snap.Decide(&r); d.Code != decision.CodeAllowed {
			b.Fatal(d.Code)
		}
	}
}

// BenchmarkBody measures Snapshot.Decide on requests with bodies: every check of the request,
// of which the body's dominates.
func BenchmarkBody(b *testing.B) {
	snap := loadBodyPolicy(b, "bench.yaml")
	for _, sz := range benchBodySizes {
		r := benchRequest("/v1/comments", "application/json", benchComment(sz.n))
		b.Run("json-schema/"+sz.name, func(b *testing.B) { benchDecide(b, snap, r) })
	}
	for _, sz := range benchBodySizes {
		r := benchRequest("/v1/notes", "application/json", benchTags(sz.n))
		b.Run("message-repeated/"+sz.name, func(b *testing.B) { benchDecide(b, snap, r) })
	}
	for _, sz := range benchBodySizes {
		r := benchRequest("/v1/notes", "application/json", benchLongText(sz.n))
		b.Run("message-string/"+sz.name, func(b *testing.B) { benchDecide(b, snap, r) })
	}
	{
		// 101 tags of 8 bytes make a frame of 1022 bytes.
		tags := make([]string, 0, 101)
		for i := 0; i < 101; i++ {
			tags = append(tags, fmt.Sprintf("tag-%04d", i))
		}
		body := frame(0, marshal(b, "Note", map[string]any{"title": "bench", "tags": tags}))
		r := benchRequest("/acme.tickets.v1.Tickets/Annotate", "application/grpc", body)
		b.Run(fmt.Sprintf("grpc/%dB", len(body)), func(b *testing.B) { benchDecide(b, snap, r) })
	}
	{
		demo := loadDemoPolicy(b)
		query := `query Revenue($q: String!) {
  revenue(quarter: $q) { total currency }
  customers(first: 20) { name orders { id total } }
}`
		body, err := json.Marshal(map[string]any{"query": query, "operationName": "Revenue", "variables": map[string]any{"q": "2026-Q3"}})
		if err != nil {
			b.Fatal(err)
		}
		r := &policy.Request{
			Agent:   spiffeid.RequireFromString("spiffe://acme.internal/agent/bi"),
			Method:  "POST",
			Host:    "bi.acme.internal",
			Target:  "/graphql",
			Headers: hdrs{"content-type": {"application/json"}},
			Body:    body,
		}
		b.Run(fmt.Sprintf("graphql/%dB", len(body)), func(b *testing.B) { benchDecide(b, demo, r) })
	}
}

// loadDemoPolicy loads the demo policy from its directory (the demo package imports this one).
func loadDemoPolicy(t testing.TB) *policy.Snapshot {
	t.Helper()
	files, err := policy.ReadPath("../internal/demo/policy")
	if err != nil {
		t.Fatal(err)
	}
	snap, err := policy.Load(files, policy.Options{Secrets: policy.Placeholders})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// TestBenchBodies keeps the benchmark's requests allowed and of the sizes they claim, so that
// the benchmarks measure the whole check, not an early refusal.
func TestBenchBodies(t *testing.T) {
	snap := loadBodyPolicy(t, "bench.yaml")
	for _, sz := range benchBodySizes {
		for name, r := range map[string]*policy.Request{
			"json-schema":      benchRequest("/v1/comments", "application/json", benchComment(sz.n)),
			"message-repeated": benchRequest("/v1/notes", "application/json", benchTags(sz.n)),
			"message-string":   benchRequest("/v1/notes", "application/json", benchLongText(sz.n)),
		} {
			if d := snap.Decide(r); d.Code != decision.CodeAllowed {
				t.Errorf("%s/%s: %s %+v", name, sz.name, d.Code, d.Violations)
			}
			if n := len(r.Body); n < sz.n*9/10 || n > sz.n {
				t.Errorf("%s/%s: body of %d bytes", name, sz.name, n)
			}
		}
	}
}
