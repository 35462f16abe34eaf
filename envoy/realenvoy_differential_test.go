package envoy_test

// The parser differential, measured: the project's ambiguity corpus (policy/target/testdata, the
// path, query, method, host and header cases of extauthz/testdata/checks, and more below) sent
// through real Envoy running front-proxy.yaml as shipped and real agentauthz with the demo
// policy, in front of upstreams that record what reaches them. For each request: what Envoy did
// (refused it itself, or checked it and how the check's target compares with what was sent),
// what agentauthz decided, and what target the upstream received. The table is the test log's
// and DIFFERENTIAL.md's (go test ./envoy -run TestRealEnvoyDifferential -update).

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/agentauthz/agentauthz/internal/audit"
	"github.com/agentauthz/agentauthz/internal/stack"
)

// diffCase is one request of the corpus.
type diffCase struct {
	source string // where it comes from
	agent  string
	h1     string      // a whole HTTP/1.1 request, or
	h2     [][2]string // HTTP/2 header fields, pseudo-headers included
	body   string      // the HTTP/2 body
}

// label is the request in one line, for the table.
func (c diffCase) label() string {
	if c.h2 != nil {
		var fs []string
		for _, f := range c.h2 {
			if f[0] != ":scheme" {
				fs = append(fs, f[0]+"="+f[1])
			}
		}
		return "h2 " + strings.Join(fs, " ")
	}
	line, rest, _ := strings.Cut(c.h1, "\r\n")
	var extra []string
	for _, h := range strings.Split(rest, "\r\n") {
		if h == "" {
			break
		}
		if k, _, _ := strings.Cut(h, ":"); strings.EqualFold(k, "connection") || strings.EqualFold(k, "content-length") && !strings.Contains(c.source, "smuggling") {
			continue
		}
		extra = append(extra, h)
	}
	return strings.TrimSuffix(line, " HTTP/1.1") + " | " + strings.Join(extra, " | ")
}

// h1Req writes an HTTP/1.1 request: the request line, then the header lines as given (Host
// among them, or not), then Connection: close and the body with its Content-Length.
func h1Req(method, target string, headers []string, body string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\n", method, target)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	if body != "" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("Connection: close\r\n\r\n" + body)
	return b.String()
}

const (
	helpdeskHost = "helpdesk.acme.internal"
	biHost       = "bi.acme.internal"
)

func helpdeskGet(target string, headers ...string) string {
	return h1Req("GET", target, append([]string{"Host: " + helpdeskHost}, headers...), "")
}

var goQuoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

// targetCorpus is policy/target's testdata: every target, sent as GET to the helpdesk API.
func targetCorpus(t *testing.T) []diffCase {
	var out []diffCase
	for _, file := range []string{"hostile.txt", "accepted.txt"} {
		data, err := os.ReadFile(filepath.Join("..", "policy", "target", "testdata", file))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			q := goQuoted.FindString(line)
			target, err := strconv.Unquote(q)
			if err != nil {
				t.Fatalf("%s: %q: %v", file, line, err)
			}
			out = append(out, diffCase{source: "target/" + file, agent: stack.HelpdeskAgent, h1: helpdeskGet(target)})
		}
	}
	return out
}

// checksCorpus is the path, query, method, host and header cases of extauthz/testdata/checks,
// sent as the agent would have: request line, Host, the agent's own headers, the body.
func checksCorpus(t *testing.T) []diffCase {
	dir := filepath.Join("..", "extauthz", "testdata", "checks")
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	keep := regexp.MustCompile(`^(deny-(path|query|method|host|x|route)-|allow-(host|get-ticket|list-tickets))`)
	var out []diffCase
	for _, p := range paths {
		name := strings.TrimSuffix(filepath.Base(p), ".json")
		if strings.HasSuffix(name, ".want") || !keep.MatchString(name) {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		cr := &authv3.CheckRequest{}
		if err := protojson.Unmarshal(b, cr); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		agent := cr.GetAttributes().GetSource().GetPrincipal()
		if agent != stack.HelpdeskAgent && agent != stack.BIAgent {
			continue
		}
		h := cr.GetAttributes().GetRequest().GetHttp()
		headers := []string{"Host: " + h.GetHost()}
		for _, hv := range h.GetHeaderMap().GetHeaders() {
			k := hv.GetKey()
			switch {
			case strings.HasPrefix(k, ":"), strings.HasPrefix(k, "x-forwarded-"), strings.HasPrefix(k, "x-envoy-"),
				k == "x-request-id", k == "content-length":
				continue
			}
			headers = append(headers, k+": "+string(hv.GetRawValue()))
		}
		out = append(out, diffCase{source: "checks/" + name, agent: agent, h1: h1Req(h.GetMethod(), h.GetPath(), headers, string(h.GetRawBody()))})
	}
	if len(out) < 40 {
		t.Fatalf("only %d cases from %s", len(out), dir)
	}
	return out
}

// extraCorpus adds what the two corpora above do not have, or have only as a CheckRequest.
func extraCorpus() []diffCase {
	const (
		hd, bi = stack.HelpdeskAgent, stack.BIAgent
		gql    = "/graphql?query=%7Brevenue(quarter%3A%22Q1%22)%7Btotal%7D%7D"
		pii    = "/graphql?query=%7Bcustomers(first%3A5)%7Bemail%7D%7D"
	)
	hdGet := func(src, target string, headers ...string) diffCase {
		return diffCase{source: src, agent: hd, h1: helpdeskGet(target, headers...)}
	}
	withHost := func(src, method, target string, hosts ...string) diffCase {
		var hs []string
		for _, h := range hosts {
			hs = append(hs, "Host: "+h)
		}
		return diffCase{source: src, agent: hd, h1: h1Req(method, target, hs, "")}
	}
	h2 := func(src, agent string, fields ...string) diffCase {
		c := diffCase{source: src, agent: agent}
		for i := 0; i+1 < len(fields); i += 2 {
			c.h2 = append(c.h2, [2]string{fields[i], fields[i+1]})
		}
		return c
	}
	cs := []diffCase{
		// Dot segments, plain and encoded, to reach another route.
		hdGet("dot", "/v1/tickets/./4711"),
		hdGet("dot", "/v1/tickets/4711/.."),
		hdGet("dot", "/v1/tickets/x/../4711"),
		hdGet("dot", "/v1/users/jdoe/password-reset/../../../tickets/4711"),
		hdGet("dot", "/v1/tickets/%2e%2e/tickets/4711"),
		hdGet("dot", "/v1/tickets/%2E/4711"),
		hdGet("dot", "/v1/tickets/.%2e/tickets/4711"),
		// Encoded separators and double encoding.
		hdGet("slash", "/v1/tickets%2F4711"),
		hdGet("slash", "/v1%2ftickets"),
		{source: "slash", agent: hd, h1: h1Req("POST", "/v1/tickets/4711%2Fcomments", []string{"Host: " + helpdeskHost, "Content-Type: application/json"}, `{"body":"x"}`)},
		hdGet("backslash", "/v1/tickets%5C4711"),
		hdGet("backslash", `/v1/tickets\4711`),
		hdGet("double", "/v1/tickets/%252e%252e/4711"),
		hdGet("double", "/v1/tickets%252F4711"),
		hdGet("double", "/v1/tickets/%25%34%37"),
		// Parameters, empty segments, trailing slash, case.
		hdGet("params", "/v1/tickets;x=1/4711"),
		hdGet("params", "/v1/tickets/4711;jsessionid=1"),
		hdGet("params", "/v1/tickets/..;/tickets/4711"),
		hdGet("slashes", "//v1/tickets/4711"),
		hdGet("slashes", "/v1//tickets/4711"),
		hdGet("slashes", "/v1/tickets/4711/"),
		hdGet("case", "/V1/Tickets/4711"),
		hdGet("encoded", "/v1/tickets/%34%37%31%31"),
		hdGet("encoded", "/v1/%74ickets/4711"),
		// Fragments and encoded delimiters.
		hdGet("fragment", "/v1/tickets/4711#x"),
		hdGet("fragment", "/v1/tickets?status=open#x"),
		hdGet("fragment", "/v1/tickets/4711%23x"),
		hdGet("delimiter", "/v1/tickets/4711%3Fstatus=open"),
		hdGet("delimiter", "/v1/tickets?status=open%26limit=500"),
		hdGet("query", "/v1/tickets?limit=10;limit=500"),
		hdGet("query", "/v1/tickets?status=open&status=closed"),
		hdGet("query", "/v1/tickets?_method=DELETE"),
		// Absolute-form targets: Envoy takes the path, and the authority from the URL.
		hdGet("absolute-form", "https://helpdesk.acme.internal/v1/tickets/4711"),
		hdGet("absolute-form", "http://helpdesk.acme.internal/v1/tickets/4711"),
		hdGet("absolute-form", "https://helpdesk.acme.internal:8443/v1/tickets/4711"),
		hdGet("absolute-form", "https://bi.acme.internal"+gql),
		hdGet("absolute-form", "https://user@helpdesk.acme.internal/v1/tickets/4711"),
		hdGet("absolute-form", "https://helpdesk.acme.internal/v1/tickets/%2e%2e/x"),
		{source: "absolute-form", agent: bi, h1: h1Req("GET", "https://bi.acme.internal"+gql, []string{"Host: " + helpdeskHost}, "")},
		// Host and authority.
		withHost("host", "GET", "/v1/tickets/4711", "helpdesk.acme.internal:8443"),
		withHost("host", "GET", "/v1/tickets/4711", "helpdesk.acme.internal:1"),
		withHost("host", "GET", "/v1/tickets/4711", "helpdesk.acme.internal:"),
		withHost("host", "GET", "/v1/tickets/4711", "helpdesk.acme.internal."),
		withHost("host", "GET", "/v1/tickets/4711", "HELPDESK.ACME.INTERNAL"),
		withHost("host", "GET", "/v1/tickets/4711", "xn--helpdesk-9ja.acme.internal"),
		withHost("host", "GET", "/v1/tickets/4711", "helpdeſk.acme.internal"),
		withHost("host", "GET", "/v1/tickets/4711", "helpdesk.acme.internal@bi.acme.internal"),
		withHost("host", "GET", "/v1/tickets/4711", "helpdesk.acme.internal", "helpdesk.acme.internal"),
		withHost("host", "GET", "/v1/tickets/4711", "helpdesk.acme.internal", "bi.acme.internal"),
		withHost("host", "GET", "/v1/tickets/4711"),
		withHost("host", "GET", "/v1/tickets/4711", "bi.acme.internal"),
		withHost("host", "GET", "/v1/tickets/4711", "payroll.acme.internal"),
		h2("h2 authority", hd, ":method", "GET", ":scheme", "https", ":authority", helpdeskHost, ":path", "/v1/tickets/4711", "host", biHost),
		h2("h2 authority", hd, ":method", "GET", ":scheme", "https", ":authority", helpdeskHost, ":authority", biHost, ":path", "/v1/tickets/4711"),
		h2("h2 authority", hd, ":method", "GET", ":scheme", "https", ":path", "/v1/tickets/4711", "host", helpdeskHost),
		h2("h2 authority", hd, ":method", "GET", ":scheme", "https", ":path", "/v1/tickets/4711"),
		h2("h2 path", hd, ":method", "GET", ":scheme", "https", ":authority", helpdeskHost, ":path", "/v1/tickets/4711#x"),
		h2("h2 path", hd, ":method", "GET", ":scheme", "https", ":authority", helpdeskHost, ":path", "v1/tickets/4711"),
		h2("h2 path", hd, ":method", "GET", ":scheme", "https", ":authority", helpdeskHost, ":path", "/v1/tickets/../tickets/4711"),
		h2("h2 path", hd, ":method", "GET", ":scheme", "https", ":authority", helpdeskHost, ":path", "/v1/tickets/4711", ":path", "/v1/tickets/4712"),
		h2("h2 path", hd, ":method", "GET", ":scheme", "https", ":authority", helpdeskHost, ":path", "/v1/tickets/4711 HTTP/1.1"),
		h2("h2 method", hd, ":method", "get", ":scheme", "https", ":authority", helpdeskHost, ":path", "/v1/tickets/4711"),
		h2("h2 header", hd, ":method", "GET", ":scheme", "https", ":authority", helpdeskHost, ":path", "/v1/tickets/4711", "X-Upper", "1"),
		h2("h2 header", hd, ":method", "GET", ":scheme", "https", ":authority", helpdeskHost, ":path", "/v1/tickets/4711", "connection", "close"),
		h2("h2 header", hd, ":method", "GET", ":scheme", "https", ":authority", helpdeskHost, ":path", "/v1/tickets/4711", "x-http-method-override", "DELETE"),
		// Methods.
		withHost("method", "get", "/v1/tickets/4711", helpdeskHost),
		withHost("method", "DELETE", "/v1/tickets/4711", helpdeskHost),
		withHost("method", "HEAD", "/v1/tickets/4711", helpdeskHost),
		withHost("method", "OPTIONS", "*", helpdeskHost),
		withHost("method", "TRACE", "/v1/tickets/4711", helpdeskHost),
		withHost("method", "CONNECT", "helpdesk.acme.internal:443", helpdeskHost),
		withHost("method", "PROPFIND", "/v1/tickets/4711", helpdeskHost),
		hdGet("method override", "/v1/tickets/4711", "X-HTTP-Method-Override: DELETE"),
		hdGet("method override", "/v1/tickets/4711", "X-HTTP-Method: DELETE"),
		hdGet("method override", "/v1/tickets/4711", "X-Method-Override: DELETE"),
		hdGet("method override", "/v1/tickets/4711", "X-Original-Method: DELETE"),
		// Headers that move the path or host in some frameworks.
		hdGet("path override", "/v1/tickets?limit=10", "X-Original-URL: /v1/tickets?limit=5000"),
		hdGet("path override", "/v1/tickets/4711", "X-Rewrite-URL: /v1/users/jdoe/password-reset"),
		hdGet("path override", "/v1/tickets/4711", "X-Original-URI: /v1/tickets/4712"),
		hdGet("path override", "/v1/tickets/4711", "X-Forwarded-Uri: /v1/tickets/4712"),
		hdGet("path override", "/v1/tickets/4711", "X-Forwarded-Prefix: /admin"),
		hdGet("path override", "/v1/tickets/4711", "X-Envoy-Original-Path: /v1/tickets/4712"),
		hdGet("path override", "/v1/tickets/4711", "X-Replaced-Path: /v1/tickets/4712"),
		hdGet("path override", "/v1/tickets/4711", "X-Original-Path: /v1/tickets/4712"),
		{source: "path override", agent: bi, h1: h1Req("GET", gql, []string{"Host: " + biHost, "X-Original-URL: " + pii}, "")},
		hdGet("host override", "/v1/tickets/4711", "X-Forwarded-Host: bi.acme.internal"),
		hdGet("host override", "/v1/tickets/4711", "Forwarded: host=bi.acme.internal"),
		hdGet("host override", "/v1/tickets/4711", "X-Original-Host: bi.acme.internal"),
		hdGet("host override", "/v1/tickets/4711", "X-Host: bi.acme.internal"),
		hdGet("host override", "/v1/tickets/4711", "X-Forwarded-Server: bi.acme.internal"),
		// Framing: what two HTTP/1.1 parsers could split differently.
		{source: "smuggling", agent: hd, h1: "POST /v1/tickets/4711/comments HTTP/1.1\r\nHost: " + helpdeskHost + "\r\nContent-Type: application/json\r\nContent-Length: 12\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n"},
		{source: "smuggling", agent: hd, h1: "POST /v1/tickets/4711/comments HTTP/1.1\r\nHost: " + helpdeskHost + "\r\nContent-Type: application/json\r\nContent-Length: 12\r\nContent-Length: 13\r\nConnection: close\r\n\r\n{\"body\":\"x\"}"},
		{source: "smuggling", agent: hd, h1: "GET /v1/tickets/4711 HTTP/1.1\r\nHost: " + helpdeskHost + "\r\nX-Folded: a\r\n b\r\nConnection: close\r\n\r\n"},
		{source: "smuggling", agent: hd, h1: "GET /v1/tickets/4711 HTTP/1.1\r\nHost : " + helpdeskHost + "\r\nConnection: close\r\n\r\n"},
		{source: "smuggling", agent: hd, h1: "GET /v1/tickets/4711 HTTP/1.0\r\nHost: " + helpdeskHost + "\r\n\r\n"},
		{source: "smuggling", agent: hd, h1: "GET /v1/tickets/4711 HTTP/1.1\r\nHost: " + helpdeskHost + "\r\nX_Api_Key: k\r\nConnection: close\r\n\r\n"},
		// Controls: requests that must pass.
		hdGet("control", "/v1/tickets?status=open&limit=10"),
		hdGet("control", "/v1/tickets/4711"),
		{source: "control", agent: bi, h1: h1Req("GET", gql, []string{"Host: " + biHost}, "")},
		h2("control", hd, ":method", "GET", ":scheme", "https", ":authority", helpdeskHost, ":path", "/v1/tickets/4711"),
	}
	return cs
}

// diffRow is what happened to one request.
type diffRow struct {
	c        diffCase
	answer   string // what the agent got: a status, a reset
	status   int
	problem  string // agentauthz's reason code in the answer, if it is agentauthz's problem
	envoy    string // Envoy's handling
	decision *audit.Decision
	upstream *stack.Received
	which    string // the upstream: helpdesk, bi
}

func (r diffRow) decided() string {
	if r.decision == nil {
		return "—"
	}
	s := r.decision.Code
	if r.decision.Rule != "" {
		s += " (" + r.decision.Rule + ")"
	}
	return s
}

func (r diffRow) reached() string {
	if r.upstream == nil {
		return "—"
	}
	return r.which + " " + r.upstream.Method + " " + r.upstream.URI
}

// TestRealEnvoyDifferential sends the corpus and checks, for every request, that
//   - nothing reached an upstream that the agent may not use, or that the upstream could read
//     as another target than the one agentauthz checked (lenientReadings: decoding, dot segments,
//     merged slashes, backslashes, ;params, case, method and path override headers);
//   - whatever reached an upstream went there as agentauthz checked it: the same method, host
//     and target, byte for byte;
//   - every refusal is a clear one: agentauthz's status with its problem details, or Envoy's own
//     4xx (or, for HTTP/2 framing Envoy refuses, a stream reset) before any check.
func TestRealEnvoyDifferential(t *testing.T) {
	s := stack.Start(t, stack.Options{})
	corpus := append(append(targetCorpus(t), checksCorpus(t)...), extraCorpus()...)
	logStart := len(s.AccessLog(t))
	var rows []diffRow
	for _, c := range corpus {
		rows = append(rows, sendDiff(t, s, c))
	}
	// Envoy's access log has one line per request, in the order they were sent (one at a time);
	// a checked request's line carries the x-request-id agentauthz recorded, which keeps them in
	// step.
	var lines []map[string]string
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if lines = s.AccessLog(t)[logStart:]; len(lines) >= len(rows) || time.Now().After(deadline) {
			break
		}
	}
	if len(lines) != len(rows) {
		t.Fatalf("%d access log lines for %d requests", len(lines), len(rows))
	}
	for i := range rows {
		if d := rows[i].decision; d != nil && lines[i]["request_id"] != d.RequestID {
			t.Fatalf("the access log is out of step at %s: request id %s, decision's %s", rows[i].c.label(), lines[i]["request_id"], d.RequestID)
		}
		rows[i].describeEnvoy(lines[i])
	}

	var sent, byEnvoy, byAuthz, afterAllow, reached, forbidden, otherReading int
	var table strings.Builder
	table.WriteString("| # | source | request | Envoy | agentauthz | agent got | upstream received |\n|---|---|---|---|---|---|---|\n")
	for i, r := range rows {
		sent++
		switch {
		case r.upstream != nil:
			reached++
		case r.decision != nil && r.decision.Outcome == "allow":
			afterAllow++
		case r.decision != nil:
			byAuthz++
		default:
			byEnvoy++
		}
		fmt.Fprintf(&table, "| %d | %s | %s | %s | %s | %s | %s |\n", i+1, r.c.source, mdCell(r.c.label()), mdCell(r.envoy), r.decided(), r.answer, mdCell(r.reached()))

		// Whatever reached an upstream: as checked, and no reading of it goes elsewhere.
		if r.upstream != nil {
			d := r.decision
			switch {
			case d == nil:
				t.Errorf("%s: reached %s without a check", r.c.label(), r.reached())
				continue
			case d.Outcome != "allow":
				t.Errorf("%s: reached %s after a %s", r.c.label(), r.reached(), d.Code)
			case r.upstream.Method != d.Method || r.upstream.URI != d.Path || !strings.EqualFold(r.upstream.Host, d.Host):
				t.Errorf("%s: checked %s %s %s, but the upstream received %s %s %s", r.c.label(), d.Method, d.Host, d.Path, r.upstream.Method, r.upstream.Host, r.upstream.URI)
			}
			// Frameworks build absolute URLs and route virtual hosts by these: an agent's own
			// value must not reach the API.
			for _, h := range []string{"X-Forwarded-Host", "X-Original-Host", "X-Host", "X-Forwarded-Server", "X-Http-Host-Override"} {
				if v := r.upstream.Header.Get(h); v != "" && !strings.EqualFold(v, d.Host) {
					otherReading++
					t.Errorf("%s: checked host %s, but the upstream may read the host as %s (%s)", r.c.label(), d.Host, v, h)
				}
			}
			if v := r.upstream.Header.Get("Forwarded"); strings.Contains(strings.ToLower(v), "host=") {
				otherReading++
				t.Errorf("%s: checked host %s, but the upstream may read the host from Forwarded: %s", r.c.label(), d.Host, v)
			}
			for _, rd := range lenientReadings(*r.upstream) {
				rt := demoRouteFor(r.which, rd.method, rd.path)
				switch {
				case rt == nil:
				case !slices.Contains(demoScopes[r.c.agent], rt.scope):
					forbidden++
					t.Errorf("%s: the upstream may read it as %s %s (%s), route %s, which %s may not use", r.c.label(), rd.method, rd.target, rd.how, rt.name, r.c.agent)
				case rt.name != d.Rule || rd.target != d.Path || rd.method != d.Method:
					otherReading++
					t.Errorf("%s: checked %s %s (%s), but the upstream may read it as %s %s (%s)", r.c.label(), d.Method, d.Path, d.Rule, rd.method, rd.target, rd.how)
				}
			}
			continue
		}
		// A refusal: clear, and from agentauthz or Envoy.
		switch {
		case r.decision != nil && r.decision.Outcome == "allow":
			// Allowed, yet nothing reached the upstream: Envoy refused it after the check (a
			// host no virtual host serves), which must be a 4xx too.
			if r.status < 400 {
				t.Errorf("%s: allowed, not forwarded, and the agent got %s", r.c.label(), r.answer)
			}
		case r.decision != nil:
			if r.status != r.decision.Status || (r.problem != r.decision.Code && !isHead(r.c)) {
				t.Errorf("%s: agentauthz denied %s %d, the agent got %s %q", r.c.label(), r.decision.Code, r.decision.Status, r.answer, r.problem)
			}
		case r.status >= 400 && r.status < 500:
		case r.c.h2 != nil && r.status == 0 && strings.HasPrefix(r.envoy, "refused: http2."):
			// HTTP/2 framing Envoy refuses: the connection ends with a protocol error, which
			// is what an HTTP/2 client reports.
		default:
			t.Errorf("%s: refused by Envoy without a clear status: %s", r.c.label(), r.answer)
		}
	}
	summary := fmt.Sprintf("%d requests: %d refused by Envoy before any check, %d refused by agentauthz, %d refused by Envoy after agentauthz allowed them, %d reached an API; %d reached a route the agent may not use, %d could be read by the API as another request than the one agentauthz checked.",
		sent, byEnvoy, byAuthz, afterAllow, reached, forbidden, otherReading)
	t.Logf("%s\n\n%s", summary, table.String())
	if forbidden != 0 || otherReading != 0 {
		t.Errorf("%s", summary)
	}
	if reached == 0 || byEnvoy == 0 || byAuthz == 0 {
		t.Errorf("the corpus should exercise every outcome: %s", summary)
	}

	doc := differentialHeader + "\n" + summary + "\n\n" + table.String()
	if t.Failed() {
		return
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	start, end := strings.Index(string(readme), summaryStart), strings.Index(string(readme), summaryEnd)
	if start < 0 || end < start {
		t.Fatalf("README.md has no %s ... %s", summaryStart, summaryEnd)
	}
	newReadme := string(readme[:start+len(summaryStart)]) + summary + string(readme[end:])
	if *update {
		for file, text := range map[string]string{"DIFFERENTIAL.md": doc, "README.md": newReadme} {
			if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	if b, err := os.ReadFile("DIFFERENTIAL.md"); err != nil || string(b) != doc || newReadme != string(readme) {
		t.Errorf("DIFFERENTIAL.md or README.md's summary is not what real Envoy and agentauthz do now; run go test ./envoy -run TestRealEnvoyDifferential -update and review the diff (%v)", err)
	}
}

// The summary's place in README.md.
const (
	summaryStart = "<!-- differential summary -->"
	summaryEnd   = "<!-- end -->"
)

const differentialHeader = `# The parser differential, measured

<!-- Generated by "go test ./envoy -run TestRealEnvoyDifferential -update". DO NOT EDIT. -->

Every request of the ambiguity corpus (policy/target/testdata, the path, query, method, host and
header cases of extauthz/testdata/checks, and the cases of envoy/realenvoy_differential_test.go)
sent by the helpdesk (or BI) agent through real Envoy 1.40.0 running front-proxy.yaml as shipped
and real agentauthz with the demo policy, to upstreams that record what reaches them. "Envoy" is
Envoy's handling: refused before any check (with its access log's response_code_details), or
checked, and how the target agentauthz checked compares with the one sent. The test fails if a
request reaches a route the agent may not use, or one the upstream could read as another request
than the one agentauthz checked, or if a refusal is not a clear status. See "HCM settings the
product requires" in README.md.
`

// mdCell escapes a table cell and shows control and non-ASCII bytes as Go escapes.
func mdCell(s string) string {
	if s == "—" {
		return s
	}
	q := strconv.QuoteToASCII(s)
	q = q[1 : len(q)-1]
	q = strings.ReplaceAll(q, `\"`, `"`)
	return strings.NewReplacer("|", `\|`, "`", "\\`", "*", `\*`, "_", `\_`, "<", "&lt;", ">", "&gt;").Replace(q)
}

// sendDiff sends one request, alone, and collects what followed: the answer, agentauthz's
// decision, what reached the upstreams, and Envoy's access log line.
func sendDiff(t *testing.T, s *stack.Stack, c diffCase) diffRow {
	t.Helper()
	r := diffRow{c: c}
	svid := s.SVID(c.agent)
	decisions, hd, bi := len(s.Authz.Decisions.All()), s.Helpdesk.Count(), s.BI.Count()
	if c.h2 != nil {
		conf := s.PKI.ClientTLS(&svid, stack.EnvoyID, "h2")
		conf.ServerName = helpdeskHost
		resp := rawH2(t, s.Addr, conf, c.h2, []byte(c.body))
		r.answer, r.status = resp.String(), resp.status
		if resp.get("content-type") == "application/problem+json" {
			r.problem = problemCode(string(resp.body))
		}
	} else {
		conf := s.PKI.ClientTLS(&svid, stack.EnvoyID, "http/1.1")
		conf.ServerName = helpdeskHost
		status, header, body, err := tryHTTP1(s.Addr, conf, c.h1)
		r.status = status
		switch {
		case err != nil:
			r.answer = "no answer (" + err.Error() + ")"
		default:
			r.answer = strconv.Itoa(status)
			if header.Get("content-type") == "application/problem+json" && !isHead(c) {
				r.problem = problemCode(body)
			}
		}
	}
	if ds := s.Authz.Decisions.All()[decisions:]; len(ds) > 0 {
		if len(ds) > 1 {
			t.Errorf("%s: %d decisions", c.label(), len(ds))
		}
		r.decision = &ds[0]
	}
	for _, u := range []struct {
		name   string
		up     *stack.Upstream
		before int
	}{{"helpdesk", s.Helpdesk, hd}, {"bi", s.BI, bi}} {
		if got := u.up.Received()[u.before:]; len(got) > 0 {
			r.upstream, r.which = &got[0], u.name
		}
	}
	if r.problem != "" {
		r.answer += " " + r.problem
	}
	return r
}

// describeEnvoy says what Envoy did with the request, from the decision and the access log line.
func (r *diffRow) describeEnvoy(line map[string]string) {
	switch {
	case r.decision == nil:
		r.envoy = "refused: " + line["response_code_details"]
	default:
		r.envoy = "checked " + r.decision.Method + " " + r.decision.Host + " " + r.decision.Path
		if sent, ok := sentTarget(r.c); ok && sent == r.decision.Path {
			r.envoy = "checked as sent"
		}
		if r.decision.Outcome == "allow" && r.upstream == nil {
			r.envoy += "; then refused: " + line["response_code_details"]
		}
	}
}

// isHead reports a HEAD request, whose answers have no body to carry problem details.
func isHead(c diffCase) bool { return strings.HasPrefix(c.h1, "HEAD ") }

// sentTarget is the request-target the case sends.
func sentTarget(c diffCase) (string, bool) {
	if c.h2 != nil {
		for _, f := range c.h2 {
			if f[0] == ":path" {
				return f[1], true
			}
		}
		return "", false
	}
	// Between the method's space and " HTTP/1.x", spaces included: Envoy's parser takes some
	// targets with extra spaces, which the table should show.
	line, _, _ := strings.Cut(c.h1, "\r\n")
	method, rest, ok := strings.Cut(line, " ")
	i := strings.LastIndex(rest, " HTTP/1.")
	if !ok || method == "" || i < 0 {
		return "", false
	}
	return rest[:i], true
}

func problemCode(body string) string {
	var p struct {
		Code string `json:"code"`
	}
	if err := json.Unmarshal([]byte(body), &p); err != nil {
		return "(unreadable problem)"
	}
	return p.Code
}

// tryHTTP1 is rawHTTP1 that reports failure instead of failing the test: Envoy may close the
// connection without an answer.
func tryHTTP1(addr string, tlsConf *tls.Config, request string) (int, http.Header, string, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, tlsConf)
	if err != nil {
		return 0, nil, "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, request); err != nil {
		return 0, nil, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, nil, "", fmt.Errorf("closed")
	}
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body), nil
}

// demoRoute is a route of the demo policy, as an upstream's router would match it.
type demoRoute struct {
	name, method string
	path         *regexp.Regexp
	scope        string
}

var demoRoutes = map[string][]demoRoute{
	"helpdesk": {
		{"list-tickets", "GET", regexp.MustCompile(`^/v1/tickets$`), "tickets:read"},
		{"get-ticket", "GET", regexp.MustCompile(`^/v1/tickets/[^/]+$`), "tickets:read"},
		{"comment-ticket", "POST", regexp.MustCompile(`^/v1/tickets/[^/]+/comments$`), "tickets:comment"},
		{"reset-password", "POST", regexp.MustCompile(`^/v1/users/[^/]+/password-reset$`), "users:password-reset"},
		{"delete-ticket", "DELETE", regexp.MustCompile(`^/v1/tickets/[^/]+$`), "tickets:delete"},
	},
	"bi": {
		{"bi-graphql", "POST", regexp.MustCompile(`^/graphql$`), "bi:query"},
		{"bi-graphql-get", "GET", regexp.MustCompile(`^/graphql$`), "bi:query"},
	},
}

var demoScopes = map[string][]string{
	stack.HelpdeskAgent: {"tickets:read", "tickets:comment", "users:password-reset"},
	stack.BIAgent:       {"bi:query"},
}

func demoRouteFor(upstream, method, p string) *demoRoute {
	for i, rt := range demoRoutes[upstream] {
		if rt.method == method && rt.path.MatchString(p) {
			return &demoRoutes[upstream][i]
		}
	}
	return nil
}

// reading is one way an upstream framework could read a request.
type reading struct {
	method, target, path, how string
}

// lenientReadings are the ways upstream frameworks are known to read a request-target more
// leniently than agentauthz: percent-decoding (once, twice) before routing, resolving dot
// segments and merging slashes (path.Clean), backslash as slash, dropping ;parameters, matching
// case-insensitively; honouring method override headers and parameters, and routing by a
// header that names the path (X-Original-URL and kin, X-Forwarded-Prefix).
func lenientReadings(u stack.Received) []reading {
	targets := []struct{ target, how string }{{u.URI, "as sent"}}
	for _, h := range []string{"X-Original-Url", "X-Rewrite-Url", "X-Original-Uri", "X-Original-Path", "X-Forwarded-Uri", "X-Forwarded-Path", "X-Replaced-Path", "X-Envoy-Original-Path"} {
		if v := u.Header.Get(h); v != "" {
			targets = append(targets, struct{ target, how string }{v, "by " + h})
		}
	}
	if v := u.Header.Get("X-Forwarded-Prefix"); v != "" {
		targets = append(targets, struct{ target, how string }{path.Join(v, u.URI), "by X-Forwarded-Prefix"})
	}
	methods := []string{u.Method}
	for _, h := range []string{"X-Http-Method-Override", "X-Http-Method", "X-Method-Override", "X-Original-Method"} {
		if v := u.Header.Get(h); v != "" {
			methods = append(methods, strings.ToUpper(v))
		}
	}
	var out []reading
	for _, t := range targets {
		p, q, _ := strings.Cut(t.target, "?")
		if qv, err := url.ParseQuery(q); err == nil && qv.Get("_method") != "" {
			methods = append(methods, strings.ToUpper(qv.Get("_method")))
		}
		paths := map[string]string{p: t.how}
		add := func(np, how string) {
			if _, ok := paths[np]; !ok {
				paths[np] = t.how + ", " + how
			}
		}
		for _, f := range []struct {
			how string
			fn  func(string) string
		}{
			{"decoded", func(s string) string { d, _ := url.PathUnescape(s); return d }},
			{"decoded twice", func(s string) string { d, _ := url.PathUnescape(s); d, _ = url.PathUnescape(d); return d }},
			{"backslash as slash", func(s string) string { return strings.ReplaceAll(s, `\`, "/") }},
			{";params dropped", func(s string) string { return regexp.MustCompile(`;[^/]*`).ReplaceAllString(s, "") }},
			{"lower case", strings.ToLower},
		} {
			for _, base := range slices.Collect(mapKeys(paths)) {
				add(f.fn(base), f.how)
			}
		}
		for _, base := range slices.Collect(mapKeys(paths)) {
			if strings.HasPrefix(base, "/") {
				add(path.Clean(base), "cleaned")
			}
		}
		for np, how := range paths {
			for _, m := range methods {
				target := np
				if q != "" {
					target += "?" + q
				}
				out = append(out, reading{method: m, target: target, path: np, how: how})
			}
		}
	}
	return out
}

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if !yield(k) {
				return
			}
		}
	}
}
