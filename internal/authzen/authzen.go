// Package authzen is agentauthz's second front door: the OpenID AuthZEN Authorization API 1.0
// (Access Evaluation, Access Evaluations, and the PDP metadata document) over the same engine
// as the Envoy front door. A PEP describes an agent's HTTP request as an evaluation (the agent's
// SPIFFE ID as the subject, the method as the action, https://HOST/PATH?QUERY as the resource,
// headers and body in the context); the package reads it into the engine's facts, asks the
// engine, and writes the engine's decision back as an AuthZEN decision. It decides nothing
// itself: the same request gets the same answer here as through Envoy, with the same approvals,
// shadow rules and decision log. docs/authzen.md is the reference.
package authzen

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauthz/agentauthz/internal/engine"
)

// The API's paths: the specification's defaults.
const (
	EvaluationPath  = "/access/v1/evaluation"
	EvaluationsPath = "/access/v1/evaluations"
	MetadataPath    = "/.well-known/authzen-configuration"
)

// RequestIDHeader identifies an AuthZEN request; the PDP echoes it on the response.
const RequestIDHeader = "X-Request-ID"

// Config says who may call and what the metadata document says.
type Config struct {
	// Tokens are the PEPs' bearer tokens; nil admits no token.
	Tokens *Tokens
	// AllowedPEPs are the SPIFFE IDs whose verified client certificates make them PEPs. Any
	// other caller with a verified certificate may ask only about itself.
	AllowedPEPs []spiffeid.ID
	// VerifiedClientCerts says the listener's TLS verified each client certificate against the
	// SPIFFE trust bundle (TLSConfig does), so that its SPIFFE ID identifies the caller. Without
	// it, certificates are ignored and only tokens authenticate.
	VerifiedClientCerts bool
	// PDP is the PDP identifier the metadata document names, an https URL without path, query or
	// fragment (see CheckPDP). Empty derives it from each metadata request's scheme and Host.
	PDP string
	// Log receives refused callers; nil discards them.
	Log *slog.Logger
}

// Handler serves the AuthZEN API over an engine. It is safe for concurrent use.
type Handler struct {
	engine *engine.Engine
	cfg    Config
}

// New returns a Handler answering with e's decisions.
func New(e *engine.Engine, cfg Config) *Handler {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Handler{engine: e, cfg: cfg}
}

// Register adds the API's three paths to mux. Each path takes every method, so that a wrong one
// gets 405 with the request id echoed.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc(EvaluationPath, func(w http.ResponseWriter, r *http.Request) { h.serveEvaluation(w, r, false) })
	mux.HandleFunc(EvaluationsPath, func(w http.ResponseWriter, r *http.Request) { h.serveEvaluation(w, r, true) })
	mux.HandleFunc(MetadataPath, h.serveMetadata)
}

// serveEvaluation answers the Access Evaluation API (batch false) and the Access Evaluations
// API. In order: the method, the caller (401: nothing is read or evaluated), the content type
// and the payload (400), whether the caller may ask about each subject (403: nothing is
// evaluated), then the evaluations.
func (h *Handler) serveEvaluation(w http.ResponseWriter, r *http.Request, batch bool) {
	echoRequestID(w, r)
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "use POST")
		return
	}
	caller, ok := h.authenticate(r)
	if !ok {
		h.cfg.Log.Info("authzen: unauthenticated call refused", "remote_addr", r.RemoteAddr, "path", r.URL.Path)
		w.Header().Set("WWW-Authenticate", `Bearer realm="agentauthz"`)
		writeError(w, http.StatusUnauthorized, "authenticate with a PEP's bearer token or a SPIFFE client certificate")
		return
	}
	if msg := checkContentType(r.Header.Values("Content-Type")); msg != "" {
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, "the request body is larger than 4 MiB")
			return
		}
		writeError(w, http.StatusBadRequest, "the request body could not be read")
		return
	}
	req, err := readRequest(data, batch)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !h.authorize(caller, req) {
		h.cfg.Log.Warn("authzen: a caller asked about another subject; refused",
			"caller", caller.Name, "remote_addr", r.RemoteAddr)
		writeError(w, http.StatusForbidden, "only a PEP may ask about another subject; ask about yourself, as subject {\"type\": \"agent\", \"id\": your SPIFFE ID}")
		return
	}
	requestID := r.Header.Get(RequestIDHeader)
	var out []byte
	if !req.batch {
		out, _ = h.evaluate(r.Context(), &req.single, requestID, nil)
	} else {
		out = h.evaluateAll(r.Context(), req, requestID)
	}
	writeJSON(w, out)
}

// authorize reports whether caller may ask about every subject the request names.
func (h *Handler) authorize(c Caller, req *request) bool {
	if !req.batch {
		return c.mayAsk(req.single.subject)
	}
	for i := range req.items {
		if req.items[i].err == nil && !c.mayAsk(req.items[i].ev.subject) {
			return false
		}
	}
	return true
}

// evaluate decides one evaluation, appends its Decision object to b, and reports whether it
// permits.
func (h *Handler) evaluate(ctx context.Context, ev *evaluation, requestID string, b []byte) ([]byte, bool) {
	var req engine.Request
	switch ev.resource.typ {
	case ResourceHTTP:
		req = readHTTP(ev)
	case ResourceMCPTool:
		req = readMCPTool(ev)
	default:
		return appendError(b, http.StatusBadRequest,
			"resource.type must be http (an HTTP request) or mcp_tool (an MCP tool call)"), false
	}
	req.RequestID = requestID
	if req.Headers != nil {
		if id, n := req.Headers.Get("x-request-id"); n == 1 {
			req.RequestID = id // the id of the request decided, as Envoy's is recorded
		}
	}
	res := h.engine.Decide(ctx, &req)
	return appendResult(b, &res), res.Decision.Allowed()
}

// evaluateAll decides a batch in order under its semantic: every evaluation (execute_all), up to
// and including the first deny or error (deny_on_first_deny), or up to and including the first
// permit (permit_on_first_permit).
func (h *Handler) evaluateAll(ctx context.Context, req *request, requestID string) []byte {
	b := make([]byte, 0, 256*len(req.items))
	b = append(b, `{"evaluations":[`...)
	for i := range req.items {
		if i > 0 {
			b = append(b, ',')
		}
		it := &req.items[i]
		permit := false
		if it.err != nil {
			b = appendError(b, it.err.status, it.err.message)
		} else {
			b, permit = h.evaluate(ctx, &it.ev, requestID, b)
		}
		if (req.semantic == DenyOnFirstDeny && !permit) || (req.semantic == PermitOnFirstPermit && permit) {
			break
		}
	}
	return append(b, "]}"...)
}

// checkContentType accepts application/json, with no parameter but charset=utf-8.
func checkContentType(values []string) string {
	const want = "send Content-Type: application/json"
	if len(values) != 1 {
		return want
	}
	mt, params, err := mime.ParseMediaType(values[0])
	if err != nil || mt != "application/json" {
		return want
	}
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
			return want + " (a charset other than utf-8, or another parameter, is refused)"
		}
	}
	return ""
}

// echoRequestID sets the response's X-Request-ID to the request's, when it has one.
func echoRequestID(w http.ResponseWriter, r *http.Request) {
	if ids := r.Header.Values(RequestIDHeader); len(ids) > 0 {
		w.Header()[RequestIDHeader] = ids
	}
}

// writeError answers an error as the specification's HTTPS binding does: the status, and an
// error message string as the body.
func writeError(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, msg) // the caller may be gone
}

func writeJSON(w http.ResponseWriter, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body) // the caller may be gone
}
