package policy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/agentauthz/agentauthz/policy/decision"
)

// An upstream acts on the request line, and on a few headers that frameworks read in its place.
// Each such header is refused, or removed before the upstream sees it, on every host; what is
// left can no more change what the upstream does than the request line and body agentauthz
// checked (and an approval binds). The lists are the policy reference's
// (Host.refuse_headers, Host.trust_forwarded_headers); a test keeps them equal.

// overrideHeader is a header that names another request line part than the one sent.
type overrideHeader struct {
	name string
	rule string // method_override, path_override or host_override
}

// overrideHeaders are refused on every host. Method overrides are refused as method_override,
// as the query parameters that do the same are; the others as header_override.
var overrideHeaders = [...]overrideHeader{
	// Another method: Rails, Laravel, Express method-override, Spring's HiddenHttpMethodFilter
	// family, Google APIs.
	{"x-http-method-override", "method_override"},
	{"x-http-method", "method_override"},
	{"x-method-override", "method_override"},
	{"x-original-method", "method_override"},
	// Another path: IIS URL Rewrite and Symfony (X-Original-URL, X-Rewrite-URL), Zend, nginx
	// auth_request (X-Original-URI), Traefik (X-Forwarded-Uri, X-Replaced-Path), Envoy's own
	// record of a rewritten path.
	{"x-original-url", "path_override"},
	{"x-rewrite-url", "path_override"},
	{"x-original-uri", "path_override"},
	{"x-original-path", "path_override"},
	{"x-forwarded-uri", "path_override"},
	{"x-forwarded-path", "path_override"},
	{"x-replaced-path", "path_override"},
	{"x-envoy-original-path", "path_override"},
	// Another host: Azure Application Gateway and Front Door (X-Original-Host), and the host
	// override some PHP frameworks read.
	{"x-original-host", "host_override"},
	{"x-http-host-override", "host_override"},
}

// forwardedHeaders describe the connection a proxy in front of the upstream received: the
// client's host, port, scheme, path prefix and address. Frameworks build URLs, redirects,
// "is this HTTPS" checks and client addresses from them. An agent sends them only to be
// believed, so on allow they are removed unless the host trusts them. Envoy sets none of them
// before the check (envoyHeaders are the ones it does set).
var forwardedHeaders = [...]string{
	"forwarded",
	"x-forwarded-host",
	"x-forwarded-server",
	"x-forwarded-prefix",
	"x-forwarded-port",
	"x-forwarded-scheme",
	"x-forwarded-protocol",
	"x-forwarded-ssl",
	"x-url-scheme",
	"front-end-https",
	"x-host",
	"x-real-ip",
	"x-client-ip",
	"true-client-ip",
	"x-cluster-client-ip",
	"x-originating-ip",
	"x-remote-ip",
	"x-remote-addr",
}

// envoyHeaders are set by Envoy's HTTP connection manager before the ext_authz filter runs
// (envoy/README.md, envoy/testdata/checkrequests): the value the check sees is Envoy's, and a
// header agentauthz removed would be removed from the upstream request with Envoy's value in it.
// agentauthz never refuses or removes them by default, and a host may not refuse them.
var envoyHeaders = [...]string{
	"x-forwarded-for",
	"x-forwarded-proto",
	"x-request-id",
	"x-envoy-external-address",
	"x-envoy-internal",
	"x-forwarded-client-cert",
}

// OverrideHeaders returns the headers refused on every host, by the rule a violation names:
// method_override, path_override or host_override.
func OverrideHeaders() map[string][]string {
	out := map[string][]string{}
	for _, h := range overrideHeaders {
		out[h.rule] = append(out[h.rule], h.name)
	}
	return out
}

// ForwardedHeaders returns the forwarded-context headers removed on allow unless a host trusts
// them.
func ForwardedHeaders() []string { return slices.Clone(forwardedHeaders[:]) }

// EnvoyHeaders returns the headers Envoy sets before the check, which agentauthz never removes.
func EnvoyHeaders() []string { return slices.Clone(envoyHeaders[:]) }

func isOverrideHeader(name string) bool {
	for _, h := range overrideHeaders {
		if h.name == name {
			return true
		}
	}
	return false
}

func isEnvoyHeader(name string) bool { return slices.Contains(envoyHeaders[:], name) }

// refuseOverrides refuses a request carrying a header of overrideHeaders; the zero Decision when
// it carries none.
func refuseOverrides(r *Request) decision.Decision {
	for _, h := range overrideHeaders {
		if _, n := r.Headers.Get(h.name); n == 0 {
			continue
		}
		switch h.rule {
		case "method_override":
			return decision.Denied(decision.CodeMethodOverride,
				"Method override headers are refused; send the request with the method you mean.",
				decision.Violation{Field: "header." + h.name, Rule: "forbidden", Message: "must not be sent"})
		case "host_override":
			return decision.Denied(decision.CodeHeaderOverride,
				"Host override headers are refused; send the request to the host you mean.",
				decision.Violation{Field: "header." + h.name, Rule: h.rule, Message: "must not be sent"})
		default:
			return decision.Denied(decision.CodeHeaderOverride,
				"Path override headers are refused; send the request to the path you mean.",
				decision.Violation{Field: "header." + h.name, Rule: h.rule, Message: "must not be sent"})
		}
	}
	return decision.Decision{}
}

// refuseHostHeaders refuses a request carrying a header the host refuses.
func (h *host) refuseHostHeaders(r *Request) decision.Decision {
	for _, name := range h.refuse {
		if _, n := r.Headers.Get(name); n > 0 {
			return decision.Denied(decision.CodeHeaderOverride,
				"This host refuses header "+name+"; send the request without it.",
				decision.Violation{Field: "header." + name, Rule: "refused", Message: "must not be sent to this host"})
		}
	}
	return decision.Decision{}
}

// hostHeaders compiles a host's refuse_headers and trust_forwarded_headers: the headers it
// refuses beside overrideHeaders, and the forwarded-context headers its grant removes.
func (c *compiler) hostHeaders(src *source, at string, refuse, trust, removed []string) (refused, strip []string) {
	for i, name := range refuse {
		hat := fmt.Sprintf("%s.refuse_headers[%d]", at, i)
		switch {
		case isOverrideHeader(name):
			c.addf(src, hat, "%s is refused on every host already", name)
		case isEnvoyHeader(name):
			c.addf(src, hat, "%s is set by Envoy before the check: refusing it would refuse every request", name)
		case isPseudoOrHopHeader(name) || name == ApprovalHeader || strings.HasPrefix(name, "content-"):
			c.addf(src, hat, "%s cannot be refused", name)
		case slices.Contains(trust, name):
			c.addf(src, hat, "%s is both refused and trusted", name)
		case slices.Contains(removed, name):
			c.addf(src, hat, "%s is both removed (remove_headers) and refused: list it in one of them", name)
		default:
			refused = append(refused, name)
		}
	}
	for i, name := range trust {
		if slices.Contains(removed, name) {
			c.addf(src, fmt.Sprintf("%s.trust_forwarded_headers[%d]", at, i), "%s is both trusted and removed (remove_headers)", name)
		}
	}
	for _, name := range forwardedHeaders {
		if !slices.Contains(trust, name) && !slices.Contains(removed, name) {
			strip = append(strip, name)
		}
	}
	return refused, strip
}
