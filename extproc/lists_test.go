package extproc_test

import (
	"context"
	"net"
	"slices"
	"sync"
	"testing"

	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/agentauthz/agentauthz/extproc"
	"github.com/agentauthz/agentauthz/internal/mcpfilter"
	"github.com/agentauthz/agentauthz/internal/metrics"
	"github.com/agentauthz/agentauthz/internal/stack"
)

const (
	helpdeskAgent = stack.HelpdeskAgent
	biAgent       = stack.BIAgent
)

// tightSchema is the input schema the helpdesk agent is shown for comment_ticket.
const tightSchema = `{"type":"object","properties":{"id":{"type":"integer"},"body":{"type":"string","maxLength":2000}},"required":["id","body"],"additionalProperties":false}`

// view is a fixed mcpfilter.View.
type view struct {
	tools     map[string]string // visible tools → schema shown ("" for the server's)
	resources []string
	templates []string
	prompts   []string
}

func (v view) Tool(name string) (bool, []byte) {
	s, ok := v.tools[name]
	if !ok || s == "" {
		return ok, nil
	}
	return true, []byte(s)
}
func (v view) Resource(uri string) bool          { return slices.Contains(v.resources, uri) }
func (v view) ResourceTemplate(tmpl string) bool { return slices.Contains(v.templates, tmpl) }
func (v view) Prompt(name string) bool           { return slices.Contains(v.prompts, name) }

// helpdeskView is what the helpdesk agent may use of the helpdesk MCP server.
var helpdeskView = view{
	tools:     map[string]string{"list_tickets": "", "comment_ticket": tightSchema},
	resources: []string{"helpdesk://tickets/open"},
	templates: []string{"helpdesk://tickets/{id}"},
	prompts:   []string{"triage"},
}

// viewLists is an extproc.Lists over mcpfilter with a fixed View per agent (an agent without
// one sees nothing), recording every request it is asked about. It stands in for the engine's
// implementation over the policy.
type viewLists struct {
	views map[string]mcpfilter.View

	mu    sync.Mutex
	asked []extproc.ListRequest
	// panicFor and nilFor name agents whose filtering panics, or returns no body.
	panicFor, nilFor string
}

func newLists() *viewLists {
	return &viewLists{views: map[string]mcpfilter.View{helpdeskAgent: helpdeskView}}
}

func (l *viewLists) FilterMCPList(_ context.Context, req extproc.ListRequest) extproc.ListResult {
	l.mu.Lock()
	req.Body = slices.Clone(req.Body)
	l.asked = append(l.asked, req)
	l.mu.Unlock()
	switch req.Agent {
	case l.panicFor:
		panic("a bug in filtering")
	case l.nilFor:
		return extproc.ListResult{}
	}
	v := l.views[req.Agent]
	if v == nil {
		v = view{}
	}
	res := mcpfilter.Filter(mcpfilter.Response{Method: req.Method, ContentType: req.ContentType,
		ContentEncoding: req.ContentEncoding, Body: req.Body}, v)
	return extproc.ListResult{Body: res.Body, ContentType: res.ContentType, Outcome: res.Outcome, Reason: res.Reason}
}

func (l *viewLists) requests() []extproc.ListRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.asked)
}

var _ extproc.Lists = (*viewLists)(nil)

// procServer is an extproc.Server on a loopback gRPC listener, with a client connected to it as
// Envoy is.
type procServer struct {
	lists  *viewLists
	reg    *prometheus.Registry
	client extprocv3.ExternalProcessorClient
}

func startProc(t testing.TB, cfg extproc.Config) *procServer {
	t.Helper()
	ps := &procServer{lists: newLists(), reg: prometheus.NewRegistry()}
	if cfg.Lists == nil {
		cfg.Lists = ps.lists
	}
	cfg.Metrics = metrics.New(ps.reg)
	g := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(g, extproc.New(cfg))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stack.ServeGRPC(t, g, l)
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ps.client = extprocv3.NewExternalProcessorClient(conn)
	return ps
}
