// Command helpdesk-api serves the demo's helpdesk API (helpdesk.acme.internal): tickets and users
// in memory, behind the bearer token agentauthz injects. It refuses every request without that
// token, the agent's own included, and logs each request with whether the injected credential
// was present. Path /mcp is the same helpdesk as an MCP server (Streamable HTTP; the demo routes
// mcp.acme.internal/mcp to it), over the same data and behind the same token; /openapi.json is
// the REST API's OpenAPI description, the one the demo policy's helpdesk host is written from.
//
//	AGENTAUTHZ_HELPDESK_TOKEN=... helpdesk-api [-addr 127.0.0.1:8081]
//
// It shuts down gracefully on SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/agentauthz/agentauthz/internal/demo/helpdesk"
	"github.com/agentauthz/agentauthz/internal/demo/helpdeskmcp"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := flag.NewFlagSet("helpdesk-api", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8081", "listen address, host:port")
	token := fs.String("token", os.Getenv(helpdesk.TokenEnv), "the only accepted bearer token (default $"+helpdesk.TokenEnv+")")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	api, err := helpdesk.New(helpdesk.Config{Token: *token, Log: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helpdesk-api:", err)
		return 2
	}
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helpdesk-api:", err)
		return 2
	}
	srv := &http.Server{Handler: helpdeskmcp.Routes(api, log), ReadHeaderTimeout: 5 * time.Second}
	log.Info("helpdesk API serving", "addr", lis.Addr().String())

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	select {
	case err := <-errc:
		log.Error("listener failed", "error", err.Error())
		return 1
	case <-ctx.Done():
	}
	log.Info("shutting down")
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("shutdown", "error", err.Error())
		return 1
	}
	return 0
}
