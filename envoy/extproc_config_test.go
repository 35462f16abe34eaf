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

// The checks of agentauthz's External Processing filter (mcp.yaml): it must fail closed, see
// the whole response body of every MCP list answer, with ext_authz's answer, and never be
// skipped for one.

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

// checkExtProcMatcher checks a matcher around ext_proc. It may skip the filter only for a
// request whose mcp_method is there and is not a list method: an and_matcher of a presence
// check and an inverted match of the list methods, both through the metadata matcher. A plain
// value_match never matches metadata (Envoy hands the metadata input's value to custom matchers
// only), so a matcher built on one, inverted, would skip every list.
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
	for _, fm := range xm.GetMatcherList().GetMatchers() {
		action := fm.GetOnMatch().GetAction().GetTypedConfig()
		if action == nil || !action.MessageIs(&skipv3.SkipFilter{}) {
			fail(p, "the matcher around ext_proc has an action other than SkipFilter")
			continue
		}
		present, notList := false, false
		for _, pred := range fm.GetPredicate().GetAndMatcher().GetPredicate() {
			sp := pred.GetSinglePredicate()
			if !isMCPMethodInput(sp.GetInput()) {
				continue
			}
			md := &metadatamatchv3.Metadata{}
			if sp.GetCustomMatch().GetTypedConfig().UnmarshalTo(md) != nil {
				continue
			}
			if md.GetValue().GetPresentMatch() && !md.GetInvert() {
				present = true
			}
			var exact []string
			for _, vm := range md.GetValue().GetOrMatch().GetValueMatchers() {
				exact = append(exact, vm.GetStringMatch().GetExact())
			}
			sort.Strings(exact)
			want := slices.Sorted(slices.Values(listMethods))
			if md.GetInvert() && slices.Equal(exact, want) {
				notList = true
			}
		}
		if !present || !notList {
			fail(p, "the matcher around ext_proc skips it other than only for an mcp_method that is there and is not a list method: an MCP list could pass unfiltered")
		}
	}
}

// isMCPMethodInput reports whether in reads ext_authz's mcp_method from the dynamic metadata.
func isMCPMethodInput(in interface{ GetTypedConfig() *anypb.Any }) bool {
	dm := &networkinputsv3.DynamicMetadataInput{}
	if in == nil || in.GetTypedConfig().UnmarshalTo(dm) != nil {
		return false
	}
	return dm.GetFilter() == extproc.MetadataNamespace && len(dm.GetPath()) == 1 && dm.GetPath()[0].GetKey() == extproc.KeyMCPMethod
}
