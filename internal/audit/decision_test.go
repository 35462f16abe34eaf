package audit

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
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

// benchDecision is a typical allow's record.
var benchDecision = Decision{
	ID: "01J8ZQ4X7V5K3M2N1P0R9S8T7U", RequestID: "6f1c2a9e-3b7d-4c1e-9a2f-8d5e4b3c2a1f",
	Agent: "spiffe://acme.internal/agent/helpdesk", Host: "helpdesk.acme.internal", Method: "GET",
	Path: "/v1/tickets?status=open&limit=10", Rule: "list-tickets", Outcome: "allow", Code: "allowed",
	PolicyRevision: "3f9a1c2b7d4e", Status: 200, Latency: 87 * time.Microsecond,
}

func BenchmarkDecision(b *testing.B) {
	d := benchDecision
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

// slogDecision renders d as slog's JSON handler writes its fields, for comparison.
func slogDecision(l *Log, t time.Time, d Decision) [64]byte {
	str := func(a []slog.Attr, k, v string) []slog.Attr {
		if v == "" {
			return a
		}
		v, _ = bound(v, MaxField)
		return append(a, slog.String(k, v))
	}
	var a []slog.Attr
	a = str(a, "id", d.ID)
	a = str(a, "request_id", d.RequestID)
	a = str(a, "agent", d.Agent)
	a = str(a, "identity_source", d.IdentitySource)
	a = str(a, "issuer", d.Issuer)
	a = str(a, "subject", d.Subject)
	a = str(a, "host", d.Host)
	a = str(a, "method", d.Method)
	a = str(a, "path", d.Path)
	a = str(a, "outcome", d.Outcome)
	a = str(a, "code", d.Code)
	if d.Status != 0 {
		a = append(a, slog.Int("status", d.Status))
	}
	a = str(a, "rule", d.Rule)
	a = str(a, "policy_revision", d.PolicyRevision)
	a = append(a, slog.Int64("latency_us", d.Latency.Microseconds()))
	a = str(a, "body_digest", d.BodyDigest)
	a = str(a, "shadow_rule", d.ShadowRule)
	a = str(a, "shadow_code", d.ShadowCode)
	a = str(a, "shadow_outcome", d.ShadowOutcome)
	a = str(a, "mcp_server", d.MCPServer)
	a = str(a, "mcp_method", d.MCPMethod)
	a = str(a, "mcp_name", d.MCPName)
	h, err := l.render("decision", t, a)
	if err != nil {
		panic(err)
	}
	return h
}

// checkDecisionLine fails unless d's record is, byte for byte, the one slog's JSON handler
// writes for its fields, and verifies.
func checkDecisionLine(t *testing.T, d Decision, at time.Time) {
	t.Helper()
	l := New(io.Discard, Options{})
	want := slogDecision(l, at, d)
	wantLine := string(l.line.b)
	l.line.b = l.appendDecision(l.line.b[:0], at, &d)
	got := l.seal()
	if got != want || string(l.line.b) != wantLine {
		t.Fatalf("decision line differs from slog's:\n got %q\nwant %q", l.line.b, wantLine)
	}
	if n, _, err := Verify(strings.NewReader(wantLine), VerifyOptions{}); n != 1 || err != nil {
		t.Fatalf("Verify: %d, %v", n, err)
	}
}

// TestDecisionLineIsSlogs: a decision's line is the line slog's JSON handler writes for the same
// fields, whatever bytes they hold.
func TestDecisionLineIsSlogs(t *testing.T) {
	at := time.Date(2026, 9, 1, 12, 0, 0, 123456789, time.UTC)
	checkDecisionLine(t, benchDecision, at)
	checkDecisionLine(t, Decision{}, at.Truncate(time.Second))
	for _, s := range []string{"\"\\/<>&\x00\x1f\x7f\n\r\t", "\xff\xfe€\u2028\u2029\u0085", strings.Repeat("é", MaxField), "\U0001F600\xed\xa0\x80"} {
		checkDecisionLine(t, Decision{ID: s, RequestID: s, Agent: s, Host: s, Method: s, Path: s, Outcome: s, Code: s, Status: -1,
			Rule: s, PolicyRevision: s, BodyDigest: s, ShadowRule: s, ShadowCode: s, ShadowOutcome: s, Latency: -time.Hour,
			IdentitySource: s, Issuer: s, Subject: s, MCPServer: s, MCPMethod: s, MCPName: s}, at)
	}
}

func FuzzDecisionLine(f *testing.F) {
	f.Add("/v1/tickets?status=open", "spiffe://acme.internal/agent/helpdesk", 200, int64(87000))
	f.Add("\"\\\x00\x7f\u2028\xff", "\xe2\x80", -1, int64(-1))
	f.Fuzz(func(t *testing.T, path, agent string, status int, latency int64) {
		checkDecisionLine(t, Decision{ID: "01J", Agent: agent, Path: path, RequestID: path + agent, Status: status,
			Latency: time.Duration(latency), Outcome: "allow"}, time.Unix(0, latency).UTC())
	})
}
