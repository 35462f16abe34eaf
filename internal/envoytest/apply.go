package envoytest

import (
	"net/http"
	"sort"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
)

type headerOptions = []*corev3.HeaderValueOption

type checkOutcome int

const (
	outcomeOK checkOutcome = iota
	outcomeDenied
	outcomeError
)

// outcome reads a CheckResponse as Envoy's gRPC client does: status OK allows; otherwise an
// error_response is an error, anything else a denial.
func outcome(resp *authv3.CheckResponse) checkOutcome {
	switch {
	case resp.GetStatus().GetCode() == int32(codes.OK):
		return outcomeOK
	case resp.GetErrorResponse() != nil:
		return outcomeError
	default:
		return outcomeDenied
	}
}

// action is a HeaderValueOption's append action; deprecated says it came from the deprecated
// append flag, whose "append" joins values into one entry instead of adding one.
func action(o *corev3.HeaderValueOption) (a corev3.HeaderValueOption_HeaderAppendAction, deprecated bool) {
	//lint:ignore SA1019 Envoy still honours the deprecated append flag, so the stand-in must too
	if flag := o.GetAppend(); flag != nil {
		if flag.GetValue() {
			return corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD, true
		}
		return corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD, true
	}
	a = o.GetAppendAction()
	if _, ok := corev3.HeaderValueOption_HeaderAppendAction_name[int32(a)]; !ok {
		return corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD, false
	}
	return a, false
}

func headerValue(h *corev3.HeaderValue) string {
	if raw := h.GetRawValue(); len(raw) > 0 {
		return string(raw)
	}
	return h.GetValue()
}

// applyRequestHeaders applies an OK response's header mutations to the upstream request, in
// order. Pseudo-headers and host are left alone.
func applyRequestHeaders(q *request, opts headerOptions) {
	for _, o := range opts {
		key := strings.ToLower(o.GetHeader().GetKey())
		if key == "" || strings.HasPrefix(key, ":") || key == "host" {
			continue
		}
		value := headerValue(o.GetHeader())
		a, deprecated := action(o)
		switch a {
		case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
			if deprecated {
				q.appendValue(key, value)
			} else {
				q.add(key, value)
			}
		case corev3.HeaderValueOption_ADD_IF_ABSENT:
			if !q.has(key) {
				q.add(key, value)
			}
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
			if q.has(key) {
				q.set(key, value)
			}
		default: // OVERWRITE_IF_EXISTS_OR_ADD
			q.set(key, value)
		}
	}
}

// removeRequestHeaders applies headers_to_remove, after the mutations, as Envoy does. Removing a
// pseudo-header or host would make the request malformed, so Envoy ignores those.
func removeRequestHeaders(q *request, names []string) {
	for _, name := range names {
		key := strings.ToLower(name)
		if strings.HasPrefix(key, ":") || key == "host" {
			continue
		}
		q.remove(key)
	}
}

// applyResponseHeaders applies header mutations to a response the client gets: a local reply's
// (denied or error) or, on OK, response_headers_to_add.
func applyResponseHeaders(h http.Header, opts headerOptions) {
	for _, o := range opts {
		key := strings.ToLower(o.GetHeader().GetKey())
		if key == "" || strings.HasPrefix(key, ":") {
			continue
		}
		value := headerValue(o.GetHeader())
		a, deprecated := action(o)
		switch a {
		case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
			if prev := h.Values(key); deprecated && len(prev) > 0 {
				prev[0] += "," + value
			} else {
				h.Add(key, value)
			}
		case corev3.HeaderValueOption_ADD_IF_ABSENT:
			if len(h.Values(key)) == 0 {
				h.Add(key, value)
			}
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
			if len(h.Values(key)) > 0 {
				h.Set(key, value)
			}
		default:
			h.Set(key, value)
		}
	}
}

type responseHeadersKey struct{}

// modifyResponse adds an OK response's response_headers_to_add to the upstream's response.
func modifyResponse(resp *http.Response) error {
	if opts, ok := resp.Request.Context().Value(responseHeadersKey{}).(headerOptions); ok {
		applyResponseHeaders(resp.Header, opts)
	}
	return nil
}

// queryParam is one key=value of a query, both raw (Envoy does not decode them).
type queryParam struct{ key, value string }

// applyQuery applies query_parameters_to_set and query_parameters_to_remove to a raw path the way
// Envoy does: when there is anything to apply, the query is parsed into parameters ordered by
// key (Envoy's QueryParamsMulti), changed, and written again; untouched, the path stays as sent.
func applyQuery(path string, set []*corev3.QueryParameter, remove []string) string {
	if len(set) == 0 && len(remove) == 0 {
		return path
	}
	base, rawQuery, _ := strings.Cut(path, "?")
	var params []queryParam
	for _, part := range strings.Split(rawQuery, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		params = append(params, queryParam{k, v})
	}
	for _, s := range set {
		params = dropKey(params, s.GetKey())
		params = append(params, queryParam{s.GetKey(), s.GetValue()})
	}
	for _, k := range remove {
		params = dropKey(params, k)
	}
	sort.SliceStable(params, func(i, j int) bool { return params[i].key < params[j].key })
	if len(params) == 0 {
		return base
	}
	var b strings.Builder
	b.WriteString(base)
	for i, p := range params {
		if i == 0 {
			b.WriteByte('?')
		} else {
			b.WriteByte('&')
		}
		b.WriteString(p.key)
		b.WriteByte('=')
		b.WriteString(p.value)
	}
	return b.String()
}

func dropKey(params []queryParam, key string) []queryParam {
	out := params[:0]
	for _, p := range params {
		if p.key != key {
			out = append(out, p)
		}
	}
	return out
}
