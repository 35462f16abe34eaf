package envoy_test

// The project's own Envoy-shaped CheckRequests, held to what real Envoy sends
// (testdata/checkrequests, TestRealEnvoyGolden). These tests need no Envoy: the golden files are
// the oracle.

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/agentauthz/agentauthz/extauthz"
)

// envoyShape lists how cr departs from what Envoy 1.40 sends through the shipped configurations
// (encode_raw_headers, with_request_body with pack_as_bytes, strip_any_host_port,
// forward_client_cert_details SANITIZE, include_tls_session off), or through front-proxy.yaml
// with encode_raw_headers off when the check uses the headers map. Every rule holds for every
// golden file of the shipped configurations (TestEnvoyShapeRulesHoldForEnvoy), so the rules
// cannot drift from what Envoy does.
func envoyShape(cr *authv3.CheckRequest) []string {
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	attrs := cr.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	if h == nil {
		return []string{"no attributes.request.http"}
	}
	if attrs.GetTlsSession() != nil {
		bad("tls_session is set: Envoy fills it only with include_tls_session")
	}
	if h.GetBody() != "" {
		bad("the body is in body: with pack_as_bytes Envoy sends raw_body")
	}
	if h.GetId() == "" || attrs.GetRequest().GetTime() == nil {
		bad("http.id or request.time is not set")
	}
	if p := h.GetProtocol(); p != "HTTP/1.1" && p != "HTTP/2" {
		bad("protocol %q", p)
	}

	// The headers, in order, and how they are carried.
	type kv struct{ k, v string }
	var hs []kv
	switch {
	case h.GetHeaderMap() != nil && len(h.GetHeaders()) > 0:
		bad("both headers and header_map")
	case h.GetHeaderMap() != nil:
		for _, hv := range h.GetHeaderMap().GetHeaders() {
			if hv.GetValue() != "" {
				bad("header_map %s carries value: Envoy fills raw_value only", hv.GetKey())
			}
			hs = append(hs, kv{hv.GetKey(), string(hv.GetRawValue())})
		}
	default:
		keys := make([]string, 0, len(h.GetHeaders()))
		for k := range h.GetHeaders() {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			hs = append(hs, kv{k, h.GetHeaders()[k]})
		}
	}
	count := map[string]int{}
	value := map[string]string{}
	for _, e := range hs {
		count[e.k]++
		value[e.k] = e.v
		if e.k != strings.ToLower(e.k) || e.k == "" {
			bad("header name %q is not lower case", e.k)
		}
	}

	// The pseudo-headers: once each, first (in a map, order is lost), and what the fields say.
	pseudo := []string{":authority", ":path", ":method", ":scheme"}
	for _, p := range pseudo {
		if count[p] != 1 {
			bad("%s appears %d times", p, count[p])
		}
	}
	if h.GetHeaderMap() != nil {
		for i, e := range hs {
			if strings.HasPrefix(e.k, ":") != (i < len(pseudo)) {
				bad("the pseudo-headers do not come first: %s at %d", e.k, i)
				break
			}
		}
		if h.GetProtocol() == "HTTP/1.1" && len(hs) >= 4 {
			var got []string
			for _, e := range hs[:4] {
				got = append(got, e.k)
			}
			if !slices.Equal(got, pseudo) {
				bad("HTTP/1.1 pseudo-headers in order %q, Envoy's is %q", got, pseudo)
			}
		}
	}
	for _, f := range []struct{ header, field string }{
		{":authority", h.GetHost()}, {":path", h.GetPath()}, {":method", h.GetMethod()}, {":scheme", h.GetScheme()},
	} {
		if value[f.header] != f.field {
			bad("%s %q, but the field says %q", f.header, value[f.header], f.field)
		}
	}
	if h.GetScheme() != "https" {
		bad("scheme %q: agents reach Envoy over TLS", h.GetScheme())
	}
	if strings.Contains(h.GetHost(), ":") {
		bad("host %q has a port: strip_any_host_port removes it", h.GetHost())
	}

	// What Envoy never sends, and what it always adds.
	for _, k := range []string{"host", "transfer-encoding", "x-forwarded-client-cert", "connection", "keep-alive"} {
		if count[k] > 0 {
			bad("a %s header: Envoy never sends one", k)
		}
	}
	if count["x-forwarded-proto"] != 1 || value["x-forwarded-proto"] != "https" {
		bad("x-forwarded-proto is not once https")
	}
	if count["x-request-id"] != 1 || !uuidRE.MatchString(value["x-request-id"]) {
		bad("x-request-id is not one UUID Envoy generated")
	}
	peer := attrs.GetSource().GetAddress().GetSocketAddress().GetAddress()
	if count["x-forwarded-for"] != 1 || peer == "" || !strings.HasSuffix(value["x-forwarded-for"], peer) {
		bad("x-forwarded-for %q does not end with the peer %q", value["x-forwarded-for"], peer)
	}
	if count["x-envoy-external-address"]+count["x-envoy-internal"] != 1 ||
		(count["x-envoy-external-address"] == 1 && value["x-envoy-external-address"] != peer) {
		bad("neither x-envoy-external-address (the peer %q) nor x-envoy-internal, once", peer)
	}

	// The body and its marker.
	body, partial := h.GetRawBody(), value[extauthz.PartialBodyHeader]
	switch {
	case len(body) == 0 && count[extauthz.PartialBodyHeader] > 0:
		bad("%s without a body", extauthz.PartialBodyHeader)
	case len(body) > 0 && (count[extauthz.PartialBodyHeader] != 1 || (partial != "true" && partial != "false")):
		bad("a body without one %s true or false", extauthz.PartialBodyHeader)
	case len(body) > 0 && h.GetHeaderMap() != nil && hs[len(hs)-1].k != extauthz.PartialBodyHeader:
		bad("%s is not the last header", extauthz.PartialBodyHeader)
	}
	switch {
	case partial == "true" && h.GetSize() <= int64(len(body)):
		bad("a partial body of %d bytes, but size %d is not more", len(body), h.GetSize())
	case partial != "true" && h.GetSize() != int64(len(body)):
		bad("size %d, but the body has %d bytes", h.GetSize(), len(body))
	}
	if cl, ok := value["content-length"]; ok {
		if n, err := strconv.ParseInt(cl, 10, 64); err != nil || count["content-length"] != 1 || n != h.GetSize() {
			bad("content-length %q, but size %d", cl, h.GetSize())
		}
	}
	return out
}

// shippedGolden reports whether a golden file comes from a shipped configuration, or from
// front-proxy.yaml with encode_raw_headers off (whose shape envoyShape also knows); not from
// the allow_partial_message variant.
func shippedGolden(name string) bool { return !strings.HasPrefix(name, "partial-") }

func goldenFiles(t *testing.T) map[string]*authv3.CheckRequest {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(goldenDir, "*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no golden CheckRequests in %s (%v)", goldenDir, err)
	}
	out := map[string]*authv3.CheckRequest{}
	for _, p := range paths {
		out[strings.TrimSuffix(filepath.Base(p), ".json")] = readCheck(t, p)
	}
	return out
}

// TestEnvoyShapeRulesHoldForEnvoy: every rule of envoyShape holds for what real Envoy sent.
func TestEnvoyShapeRulesHoldForEnvoy(t *testing.T) {
	for name, cr := range goldenFiles(t) {
		problems := envoyShape(cr)
		if !shippedGolden(name) {
			// allow_partial_message: the one departure is the partial body itself.
			if v := first(headerValues(cr, extauthz.PartialBodyHeader)); v == "true" && len(problems) != 0 {
				t.Errorf("%s: %q", name, problems)
			}
			continue
		}
		if len(problems) > 0 {
			t.Errorf("%s, from real Envoy, breaks envoyShape's rules: %q", name, problems)
		}
	}
}

// notFromEnvoy are the fixtures of extauthz/testdata/checks that depart from Envoy's shape on
// purpose, and why: each is an input a shipped Envoy never sends, kept because agentauthz must
// still refuse it (another front door, a misconfigured Envoy). Every other fixture must have
// Envoy's shape. The deny-malformed-* fixtures are contradictions Envoy could not send at all.
var notFromEnvoy = map[string]string{
	"deny-body-announced-chunked":                 "transfer-encoding never reaches a check: Envoy consumes the chunking (post-json-chunked); the check has the body",
	"deny-body-announced-content-length":          "content-length without the body: an Envoy without with_request_body",
	"deny-comment-ticket-content-length-mismatch": "Envoy refuses a body shorter or longer than its content-length",
	"deny-comment-ticket-body-not-forwarded":      "content-length without the body: an Envoy without with_request_body",
	"deny-identity-from-headers":                  "x-forwarded-client-cert: an Envoy that forwards it (not SANITIZE)",
	"deny-identity-headers-do-not-upgrade":        "x-forwarded-client-cert: an Envoy that forwards it (not SANITIZE)",
	"deny-host-with-port":                         "a port in the host: an Envoy without strip_any_host_port",
	"deny-comment-ticket-too-large":               "content-length without the body: an Envoy without with_request_body (with it, deny-comment-ticket-body-over-max-bytes)",
	"deny-body-partial":                           "the partial-body marker without a body: Envoy adds it only to a check that carries one",
	"allow-fields-from-pseudo-headers":            "method, path and host fields empty: Envoy 1.40 fills them; the reader falls back to the pseudo-headers",
}

// TestFixturesHaveEnvoyShape holds the hand-written CheckRequests of extauthz/testdata/checks
// to envoyShape.
func TestFixturesHaveEnvoyShape(t *testing.T) {
	dir := filepath.Join("..", "extauthz", "testdata", "checks")
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no fixtures in %s (%v)", dir, err)
	}
	seen := map[string]bool{}
	for _, p := range paths {
		name := strings.TrimSuffix(filepath.Base(p), ".json")
		if strings.HasSuffix(name, ".want") || strings.HasPrefix(name, "deny-malformed-") {
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
		problems := envoyShape(cr)
		why, excused := notFromEnvoy[name]
		seen[name] = excused
		switch {
		case excused && len(problems) == 0:
			t.Errorf("%s is listed as not from Envoy (%s), but has Envoy's shape: take it off the list", name, why)
		case !excused && len(problems) > 0:
			t.Errorf("%s departs from what Envoy sends: %q", name, problems)
		}
	}
	for name := range notFromEnvoy {
		if _, ok := seen[name]; !ok {
			t.Errorf("notFromEnvoy lists %s, which is not a fixture", name)
		}
	}
}

// TestBuilderMatchesEnvoy: extauthz.HTTPRequest.CheckRequest, which the check command, policy
// tests and many Go tests use, builds what real Envoy sends for the same request. For an
// HTTP/1.1 request the headers agree entry for entry, in order; for HTTP/2 (whose pseudo-header
// and header order are the client's) as a set. Either way, agentauthz reads both alike.
func TestBuilderMatchesEnvoy(t *testing.T) {
	golden := goldenFiles(t)
	n := 0
	for _, c := range goldenCases() {
		if c.fixture == nil {
			continue
		}
		n++
		t.Run(c.name, func(t *testing.T) {
			want := golden[c.name]
			if want == nil {
				t.Fatalf("no golden file %s.json", c.name)
			}
			got := c.fixture.CheckRequest()
			wh, gh := want.GetAttributes().GetRequest().GetHttp(), got.GetAttributes().GetRequest().GetHttp()
			if wh.GetHeaderMap() == nil {
				extauthz.MapHeaders(got)
			}
			if problems := envoyShape(withRunValues(got)); len(problems) > 0 {
				t.Errorf("the builder's CheckRequest departs from Envoy's shape: %q", problems)
			}
			for _, f := range []struct{ name, want, got string }{
				{"source.principal", want.GetAttributes().GetSource().GetPrincipal(), got.GetAttributes().GetSource().GetPrincipal()},
				{"source.address", want.GetAttributes().GetSource().GetAddress().GetSocketAddress().GetAddress(), got.GetAttributes().GetSource().GetAddress().GetSocketAddress().GetAddress()},
				{"method", wh.GetMethod(), gh.GetMethod()},
				{"host", wh.GetHost(), gh.GetHost()},
				{"path", wh.GetPath(), gh.GetPath()},
				{"scheme", wh.GetScheme(), gh.GetScheme()},
				{"size", fmt.Sprint(wh.GetSize()), fmt.Sprint(gh.GetSize())},
				{"body", wh.GetBody(), gh.GetBody()},
			} {
				if f.want != f.got {
					t.Errorf("%s: Envoy %q, builder %q", f.name, f.want, f.got)
				}
			}
			if !bytes.Equal(wh.GetRawBody(), gh.GetRawBody()) {
				t.Errorf("raw_body: Envoy %q, builder %q", wh.GetRawBody(), gh.GetRawBody())
			}
			wantH, gotH := headerList(want), headerList(got)
			if wh.GetProtocol() != "HTTP/1.1" || wh.GetHeaderMap() == nil {
				slices.Sort(wantH)
				slices.Sort(gotH)
			}
			if d := cmp.Diff(wantH, gotH); d != "" {
				t.Errorf("headers (-Envoy +builder):\n%s", d)
			}
			// What agentauthz reads of each.
			wr, gr := extauthz.ReadRequest(want), extauthz.ReadRequest(got)
			if wr.Unreadable != nil || gr.Unreadable != nil {
				t.Fatalf("unreadable: Envoy's %v, builder's %v", wr.Unreadable, gr.Unreadable)
			}
			if wr.Principal != gr.Principal || wr.Method != gr.Method || wr.Host != gr.Host || wr.Target != gr.Target ||
				!bytes.Equal(wr.Body, gr.Body) || wr.BodyPartial != gr.BodyPartial {
				t.Errorf("agentauthz reads Envoy's as %+v, the builder's as %+v", wr, gr)
			}
		})
	}
	if n < 4 {
		t.Errorf("only %d golden cases have a builder equivalent", n)
	}
}

// headerList is a check's headers as "name: value" lines in order (a map's sorted), with the
// values that differ per run as the golden files normalise them.
func headerList(cr *authv3.CheckRequest) []string {
	h := cr.GetAttributes().GetRequest().GetHttp()
	var out []string
	if hm := h.GetHeaderMap(); hm != nil {
		for _, hv := range hm.GetHeaders() {
			out = append(out, hv.GetKey()+": "+string(hv.GetRawValue())+hv.GetValue())
		}
		return out
	}
	for k, v := range h.GetHeaders() {
		out = append(out, k+": "+v)
	}
	slices.Sort(out)
	return out
}

// withRunValues gives a built CheckRequest the values only a running Envoy has (a stream id, a
// time), which envoyShape expects.
func withRunValues(cr *authv3.CheckRequest) *authv3.CheckRequest {
	cr.GetAttributes().GetRequest().GetHttp().Id = normalID
	cr.GetAttributes().GetRequest().Time = normalTime
	return cr
}
