package response

import (
	"fmt"
	"strings"
	"testing"
)

// ticketList is a JSON list of n tickets, each with requester details and comments, about
// 400 bytes a ticket.
func ticketList(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"tickets":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"T-%d","subject":"VPN drops every hour","status":"open","priority":2,`+
			`"requester":{"name":"Ada Lovelace","email":"ada%d@example.com","phone":"+1 555 0100"},`+
			`"comments":[{"body":"Restarted the client, no change.","author":"ada","internal":false},`+
			`{"body":"Escalated to network team.","author":"ops","internal":true}],"tags":["vpn","network"]}`, i, i)
	}
	b.WriteString(`],"next":null}`)
	return []byte(b.String())
}

func benchFilter(b *testing.B, size int) {
	n := 1
	for len(ticketList(n)) < size {
		n++
	}
	body := ticketList(n)
	r := mustCompile(b, Spec{Reduce: true,
		Allow:  []string{"/tickets/*/id", "/tickets/*/subject", "/tickets/*/status", "/tickets/*/requester", "/tickets/*/comments/*/body", "/next"},
		Redact: []Redaction{{Pointer: "/tickets/*/requester/email"}, {Pointer: "/tickets/*/requester/phone", Remove: true}}})
	in := Input{Status: 200, ContentType: "application/json", Body: body}
	if res := r.Filter(in); res.Outcome != Reduced {
		b.Fatalf("%s: %s", res.Outcome, res.Reason)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		r.Filter(in)
	}
}

func BenchmarkFilter4KB(b *testing.B)  { benchFilter(b, 4<<10) }
func BenchmarkFilter64KB(b *testing.B) { benchFilter(b, 64<<10) }
