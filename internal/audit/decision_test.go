package audit

import (
	"bytes"
	"encoding/json"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// keys returns the top-level keys of a JSON object in order.
func keys(t *testing.T, line string) []string {
	t.Helper()
	var ks []string
	for _, k := range topKeys([]byte(line), nil) {
		ks = append(ks, string(k))
	}
	return ks
}

func TestDecisionFields(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf, Options{Clock: clock()})
	full := Decision{
		ID: "01J", RequestID: "req-1", Agent: "spiffe://acme.internal/agent/helpdesk", Host: "helpdesk.acme.internal",
		Method: "POST", Path: "/v1/tickets/1/comments", Rule: "comment-ticket", Outcome: "allow", Code: "allowed",
		PolicyRevision: "abc123", BodyDigest: strings.Repeat("e", 64), Status: 200, Latency: 2345678 * time.Nanosecond,
		ShadowRule: "comment-ticket-v2", ShadowCode: "body_schema", ShadowOutcome: "deny",
	}
	if err := l.Decision(full); err != nil {
		t.Fatal(err)
	}
	if err := l.Decision(Decision{Outcome: "deny", Code: "identity_missing"}); err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(buf.String(), "\n")
	want := []string{"time", "kind", "id", "request_id", "agent", "host", "method", "path", "outcome", "code", "status", "rule",
		"policy_revision", "latency_us", "body_digest", "shadow_rule", "shadow_code", "shadow_outcome", "seq", "prev", "hash"}
	if got := keys(t, lines[0]); !slices.Equal(got, want) {
		t.Errorf("keys %v\nwant %v", got, want)
	}
	var rec struct {
		Kind      string `json:"kind"`
		Status    int    `json:"status"`
		LatencyUS int64  `json:"latency_us"`
		Shadow    string `json:"shadow_outcome"`
	}
	json.Unmarshal([]byte(lines[0]), &rec)
	if rec.Kind != "decision" || rec.Status != 200 || rec.LatencyUS != 2345 || rec.Shadow != "deny" {
		t.Errorf("record %+v", rec)
	}
	if got, want := keys(t, lines[1]), []string{"time", "kind", "outcome", "code", "latency_us", "seq", "prev", "hash"}; !slices.Equal(got, want) {
		t.Errorf("sparse decision keys %v, want %v", got, want)
	}
}

func BenchmarkDecision(b *testing.B) {
	d := Decision{
		ID: "01J8ZQ4X7V5K3M2N1P0R9S8T7U", RequestID: "6f1c2a9e-3b7d-4c1e-9a2f-8d5e4b3c2a1f",
		Agent: "spiffe://acme.internal/agent/helpdesk", Host: "helpdesk.acme.internal", Method: "GET",
		Path: "/v1/tickets?status=open&limit=10", Rule: "list-tickets", Outcome: "allow", Code: "allowed",
		PolicyRevision: "3f9a1c2b7d4e", Status: 200, Latency: 87 * time.Microsecond,
	}
	for _, bc := range []struct {
		name string
		log  func(b *testing.B) *Log
	}{
		{"file", func(b *testing.B) *Log { return open(b, filepath.Join(b.TempDir(), "audit.log"), Options{}) }},
		{"discard", func(b *testing.B) *Log { return New(io.Discard, Options{}) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			l := bc.log(b)
			defer l.Close()
			b.ReportAllocs()
			for b.Loop() {
				if err := l.Decision(d); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bc.name+"-parallel", func(b *testing.B) {
			l := bc.log(b)
			defer l.Close()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := l.Decision(d); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	var buf bytes.Buffer
	l := New(&buf, Options{})
	for range 1000 {
		l.Decision(Decision{ID: "01J8ZQ4X7V5K3M2N1P0R9S8T7U", Agent: "spiffe://acme.internal/agent/helpdesk", Path: "/v1/tickets?status=open&limit=10", Outcome: "allow", Status: 200})
	}
	b.SetBytes(int64(buf.Len()))
	b.ReportAllocs()
	for b.Loop() {
		if n, _, err := Verify(bytes.NewReader(buf.Bytes()), VerifyOptions{}); n != 1000 || err != nil {
			b.Fatal(n, err)
		}
	}
}
