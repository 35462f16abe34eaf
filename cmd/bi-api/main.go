// Command bi-api serves the demo's business-intelligence API (bi.acme.internal): GraphQL at
// /graphql over the demo schema, with canned revenue and customer data. It needs no credential
// (agentauthz injects none for it) and logs every request with its operation.
//
//	bi-api [-addr 127.0.0.1:8082]
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

	"github.com/agentauthz/agentauthz/internal/demo/bi"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := flag.NewFlagSet("bi-api", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8082", "listen address, host:port")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	api, err := bi.New(log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bi-api:", err)
		return 2
	}
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bi-api:", err)
		return 2
	}
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 5 * time.Second}
	log.Info("BI API serving", "addr", lis.Addr().String(), "path", "/graphql")

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
