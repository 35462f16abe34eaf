package response

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
)

// rusageThread is RUSAGE_THREAD: Getrusage of the calling thread.
const rusageThread = 1

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
	start := threadCPU()
	for b.Loop() {
		r.Filter(in)
	}
	// On a shared machine wall time counts the waits for a core too; the thread's CPU time is
	// the filter's own cost.
	b.ReportMetric(float64(threadCPU()-start)/float64(b.N), "cpu-ns/op")
}

// threadCPU is the CPU time of the calling thread, in nanoseconds.
func threadCPU() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func BenchmarkFilter4KB(b *testing.B)  { benchFilter(b, 4<<10) }
func BenchmarkFilter64KB(b *testing.B) { benchFilter(b, 64<<10) }
