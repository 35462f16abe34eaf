package envoy_test

import (
	"slices"
	"sort"

	matchingv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/matching/v3"
	skipv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/matcher/action/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_proc/v3"
	networkinputsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/matching/common_inputs/network/v3"
	metadatamatchv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/matching/input_matchers/metadata/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/agentauthz/agentauthz/extproc"
	"github.com/agentauthz/agentauthz/internal/mcpfilter"
)

// The checks of agentauthz's External Processing filter (front-proxy.yaml, mcp.yaml): it must
// fail closed, see the whole response body of every response with a response rule and of every
// MCP list answer, with ext_authz's answer, and never be skipped for one.

// listMethods are the MCP methods whose answers ext_proc filters.
var listMethods = []string{mcpfilter.ToolsList, mcpfilter.ResourcesList, mcpfilter.ResourceTemplatesList, mcpfilter.PromptsList}

func checkExtProc(p string, m *extprocv3.ExternalProcessor, fail failFunc) {
	if m.GetFailureModeAllow() {
		fail(p, "ext_proc failure_mode_allow is true: an MCP list would reach the agent unfiltered whenever agentauthz cannot be reached")
	}
	if m.GetObservabilityMode() {
		fail(p, "ext_proc observability_mode is true: agentauthz's answers would be ignored and lists pass unfiltered")
	}
	if m.GetDisableImmediateResponse() {
		fail(p, "ext_proc disable_immediate_response is true: agentauthz's 502 for a list it will not read would be dropped, and the list passed")
	}
	if m.GetHttpService() != nil || m.GetGrpcService().GetEnvoyGrpc() == nil {
		fail(p, "ext_proc does not call agentauthz over envoy_grpc")
	}
	pm := m.GetProcessingMode()
	if pm.GetResponseHeaderMode() != extprocv3.ProcessingMode_SEND {
		fail(p, "ext_proc response_header_mode is %v, want SEND: agentauthz reads the content type and encoding, and sets content-length", pm.GetResponseHeaderMode())
	}
	if pm.GetResponseBodyMode() != extprocv3.ProcessingMode_BUFFERED {
		fail(p, "ext_proc response_body_mode is %v, want BUFFERED: a list is filtered whole or not at all", pm.GetResponseBodyMode())
	}
	if !slices.Contains(m.GetMetadataOptions().GetForwardingNamespaces().GetUntyped(), extproc.MetadataNamespace) {
		fail(p, "ext_proc does not forward the %s metadata namespace: agentauthz cannot tell whose list it filters, and empties every one", extproc.MetadataNamespace)
	}
	if !slices.Contains(m.GetResponseAttributes(), extproc.AttributeRequestMethod) {
		fail(p, "ext_proc response_attributes lacks %s: agentauthz cannot tell an event stream opened by GET from an answer it was not told the MCP method of, and replaces both", extproc.AttributeRequestMethod)
	}
	if m.GetAllowModeOverride() {
		if len(m.GetAllowedOverrideModes()) == 0 {
			fail(p, "ext_proc allow_mode_override without allowed_override_modes: any mode could be asked for")
		}
		for _, am := range m.GetAllowedOverrideModes() {
			if am.GetResponseBodyMode() != extprocv3.ProcessingMode_NONE {
				fail(p, "ext_proc allows an override to response_body_mode %v; only NONE (for answers that are not lists) is needed", am.GetResponseBodyMode())
			}
		}
	}
}

// checkExtProcMatcher checks a matcher around ext_proc. Each of its matchers must skip the filter
// only for a response without a response rule: a conjunction of metadata checks (a single
// predicate, or an and_matcher of them), one of which is an inverted presence check of
// response_rule. Where the filter also filters MCP lists (mcp.yaml: a matcher reads
// mcp_method), each skip must also be one that never skips a list: for an mcp_method that is
// there and is not a list method (a presence check and an inverted match of the list methods),
// or for a request ext_authz never answered (decision_id absent: Envoy refused it itself, and
// nothing reached the MCP server). All through the metadata matcher: a plain value_match never
// matches metadata (Envoy hands the metadata input's value to custom matchers only), so a
// matcher built on one, inverted, would skip every list.
func checkExtProcMatcher(p string, m *matchingv3.ExtensionWithMatcher, fail failFunc) {
	inner, err := m.GetExtensionConfig().GetTypedConfig().UnmarshalNew()
	if err != nil {
		return // reported by validateDeep
	}
	if _, ok := inner.(*extprocv3.ExternalProcessor); !ok {
		return
	}
	xm := m.GetXdsMatcher()
	if xm == nil {
		fail(p, "the matcher around ext_proc is not an xds_matcher, the one form whose skips are checked")
	}
	if xm.GetMatcherTree() != nil || xm.GetOnNoMatch() != nil {
		fail(p, "the matcher around ext_proc has a matcher_tree or on_no_match: only a matcher_list of checked skips is safe")
	}
	skips := extProcSkips(m)
	lists := slices.ContainsFunc(skips, func(s skip) bool { return s.readsMethod })
	for _, s := range skips {
		switch {
		case s.problem != "":
			fail(p, "%s", s.problem)
		case !s.noRule:
			fail(p, "the matcher around ext_proc skips it without checking that response_rule is absent: a response the policy guards could reach the agent unfiltered")
		case (s.readsMethod || lists) && !(s.present && s.notList) && !s.noAnswer:
			fail(p, "the matcher around ext_proc skips it other than only for an mcp_method that is there and is not a list method: an MCP list could pass unfiltered")
		}
	}
}

// skip is what one matcher around ext_proc tests before it skips the filter.
type skip struct {
	problem string // not a conjunction of metadata checks, or not a SkipFilter
	// noRule: response_rule is absent; noAnswer: decision_id is absent; readsMethod: mcp_method
	// is read; present, notList: it is there, and is not a list method.
	noRule, noAnswer, readsMethod, present, notList bool
}

// extProcSkips reads each matcher of the matcher_list around ext_proc. A conjunct the metadata
// matcher does not read only narrows a skip, and is passed over.
func extProcSkips(m *matchingv3.ExtensionWithMatcher) []skip {
	var out []skip
	for _, fm := range m.GetXdsMatcher().GetMatcherList().GetMatchers() {
		action := fm.GetOnMatch().GetAction().GetTypedConfig()
		if action == nil || !action.MessageIs(&skipv3.SkipFilter{}) {
			out = append(out, skip{problem: "the matcher around ext_proc has an action other than SkipFilter"})
			continue
		}
		single := fm.GetPredicate().GetSinglePredicate()
		conj := fm.GetPredicate().GetAndMatcher().GetPredicate()
		n := len(conj)
		if single != nil {
			n = 1
		}
		if n == 0 {
			out = append(out, skip{problem: "the matcher around ext_proc skips it on a predicate that is not a conjunction of metadata checks"})
			continue
		}
		var s skip
		for i := range n {
			sp := single
			if sp == nil {
				sp = conj[i].GetSinglePredicate()
			}
			md := &metadatamatchv3.Metadata{}
			if sp.GetCustomMatch().GetTypedConfig().UnmarshalTo(md) != nil {
				continue
			}
			absent := md.GetValue().GetPresentMatch() && md.GetInvert()
			switch {
			case isMetadataInput(sp.GetInput(), extproc.KeyResponseRule):
				s.noRule = s.noRule || absent
			case isMetadataInput(sp.GetInput(), extproc.KeyDecisionID):
				s.noAnswer = s.noAnswer || absent
			case isMetadataInput(sp.GetInput(), extproc.KeyMCPMethod):
				s.readsMethod = true
				if md.GetValue().GetPresentMatch() && !md.GetInvert() {
					s.present = true
				}
				var exact []string
				for _, vm := range md.GetValue().GetOrMatch().GetValueMatchers() {
					exact = append(exact, vm.GetStringMatch().GetExact())
				}
				sort.Strings(exact)
				want := slices.Sorted(slices.Values(listMethods))
				if md.GetInvert() && slices.Equal(exact, want) {
					s.notList = true
				}
			}
		}
		out = append(out, s)
	}
	return out
}

// isMetadataInput reports whether in reads ext_authz's answer's key from the dynamic metadata.
func isMetadataInput(in interface{ GetTypedConfig() *anypb.Any }, key string) bool {
	dm := &networkinputsv3.DynamicMetadataInput{}
	if in == nil || in.GetTypedConfig().UnmarshalTo(dm) != nil {
		return false
	}
	return dm.GetFilter() == extproc.MetadataNamespace && len(dm.GetPath()) == 1 && dm.GetPath()[0].GetKey() == key
}
