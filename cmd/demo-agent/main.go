// Command demo-agent is the demo's scripted AI agent. It plays the helpdesk story (tickets, a
// comment, a password reset held for an IT admin's approval) and the BI story (allowed reports,
// refused personal data and mutation) against Envoy's front door, printing each step. The
// stories helpdesk-mcp and bi-mcp play the same agents at the helpdesk's MCP server
// (mcp.acme.internal/mcp) with the MCP Go SDK's client:
//
//	demo-agent -envoy https://envoy:8443 -spiffe-socket unix:///run/spire/agent/public/api.sock -story helpdesk-mcp
//
// Against the helpdesk MCP server itself, with no agentauthz in front (the agent then sends the
// server's own token, and expects the server's own answers):
//
//	demo-agent -story helpdesk-mcp,bi-mcp -direct -mcp http://127.0.0.1:8081/mcp -agent-token "$AGENTAUTHZ_HELPDESK_TOKEN"
//
// In compose (compose/README.md), against the real Envoy over mTLS with the agent's X.509-SVID
// from the SPIRE agent:
//
//	demo-agent -envoy https://envoy:8443 -spiffe-socket unix:///run/spire/agent/public/api.sock -story bi
//
// Against a plaintext front door that vouches for the agent's identity itself (http://), it
// sends plain HTTP; the end-to-end tests (internal/e2e) drive the same stories in process with
// internal/demo/demoagent, through real Envoy:
//
//	demo-agent -envoy http://127.0.0.1:8443 -story helpdesk
//
// It exits 0 when every step got the answer the story expects, 1 when one did not, 2 on usage
// errors.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/agentauthz/agentauthz/internal/demo/demoagent"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := flag.NewFlagSet("demo-agent", flag.ContinueOnError)
	envoy := fs.String("envoy", "http://127.0.0.1:8443", "Envoy's front door")
	biEnvoy := fs.String("bi-envoy", "", "the BI agent's front door, when it is another one (default -envoy)")
	story := fs.String("story", "helpdesk,bi", "stories to play, comma-separated: "+strings.Join(slices.Concat(demoagent.Stories, demoagent.MCPStories), ", "))
	socket := fs.String("spiffe-socket", os.Getenv("SPIFFE_ENDPOINT_SOCKET"), "SPIFFE Workload API socket: call Envoy over mTLS with this workload's X.509-SVID")
	envoyID := fs.String("envoy-id", "spiffe://acme.internal/envoy", "Envoy's SPIFFE ID, the only server the agent trusts over mTLS")
	approvals := fs.String("approvals-url", "http://localhost:9002", "agentauthz's approval API and console, as a human reaches them")
	poll := fs.Duration("poll", 3*time.Second, "how often to retry a request held for approval")
	wait := fs.Duration("approval-timeout", 15*time.Minute, "how long to wait for an approval")
	startup := fs.Duration("startup-wait", time.Minute, "how long to retry while the front door is starting")
	token := fs.String("agent-token", demoagent.DefaultAgentToken, "the agent's own credential, which agentauthz must strip")
	mcpURL := fs.String("mcp", "", "the MCP endpoint of the MCP stories (default -envoy, or -bi-envoy for the BI agent, with /mcp)")
	mcpVersion := fs.String("mcp-protocol", "", "the MCP revision to ask for, e.g. 2025-11-25 (default the SDK's newest)")
	direct := fs.Bool("direct", false, "the MCP stories talk to the MCP server with no agentauthz in front, and expect its own answers")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "demo-agent: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	var stories []string
	for _, s := range strings.Split(*story, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		if all := slices.Concat(demoagent.Stories, demoagent.MCPStories); !slices.Contains(all, s) {
			fmt.Fprintf(os.Stderr, "demo-agent: -story: no story %q; the stories are %s\n", s, strings.Join(all, ", "))
			return 2
		}
		stories = append(stories, s)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	if *direct && *mcpURL == "" {
		fmt.Fprintln(os.Stderr, "demo-agent: -direct needs -mcp, the MCP server's own endpoint")
		return 2
	}
	client, closeClient, err := httpClient(ctx, *envoy, *socket, *envoyID)
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo-agent:", err)
		return 2
	}
	defer closeClient()
	_, err = demoagent.Run(ctx, demoagent.Config{
		Envoy:              strings.TrimSuffix(*envoy, "/"),
		BIEnvoy:            strings.TrimSuffix(*biEnvoy, "/"),
		Stories:            stories,
		Client:             client,
		Out:                os.Stdout,
		AgentToken:         *token,
		PollInterval:       *poll,
		ApprovalTimeout:    *wait,
		ApprovalsURL:       *approvals,
		StartupWait:        *startup,
		MCP:                *mcpURL,
		MCPProtocolVersion: *mcpVersion,
		Direct:             *direct,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo-agent:", err)
		return 1
	}
	fmt.Println("All steps got the answers the stories expect.")
	return 0
}

// httpClient is a plain client for an http:// front door, or an mTLS client presenting this
// workload's X.509-SVID (rotated as SPIRE renews it) and trusting only Envoy's SPIFFE ID.
func httpClient(ctx context.Context, envoy, socket, envoyID string) (*http.Client, func(), error) {
	u, err := url.Parse(envoy)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, nil, fmt.Errorf("-envoy %q is not an http:// or https:// URL", envoy)
	}
	if u.Scheme == "http" {
		return &http.Client{Timeout: 30 * time.Second}, func() {}, nil
	}
	if socket == "" {
		return nil, nil, fmt.Errorf("-envoy %s is https: give -spiffe-socket, the Workload API the agent's SVID comes from", envoy)
	}
	id, err := spiffeid.FromString(envoyID)
	if err != nil {
		return nil, nil, fmt.Errorf("-envoy-id: %v", err)
	}
	wait, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	fmt.Printf("Fetching this agent's X.509-SVID from %s ...\n", socket)
	src, err := workloadapi.NewX509Source(wait, workloadapi.WithClientOptions(workloadapi.WithAddr(socket)))
	if err != nil {
		return nil, nil, fmt.Errorf("no X.509-SVID from the Workload API at %s: %v", socket, err)
	}
	svid, err := src.GetX509SVID()
	if err != nil {
		src.Close()
		return nil, nil, err
	}
	fmt.Printf("This agent is %s; it trusts only %s as its front door.\n", svid.ID, id)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsconfig.MTLSClientConfig(src, src, tlsconfig.AuthorizeID(id))
	tr.TLSClientConfig.MinVersion = tls.VersionTLS12
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, func() { src.Close() }, nil
}
