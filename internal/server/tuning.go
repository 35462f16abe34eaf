package server

import (
	"crypto/tls"
	"os"
	"runtime"
	"runtime/debug"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// GRPCOptions are the transport settings agentauthz serves gRPC with, over tlsConfig when it is
// not nil. Load harnesses give their no-op ceiling the same, so that a comparison measures the
// authorization work and nothing else.
func GRPCOptions(tlsConfig *tls.Config) []grpc.ServerOption {
	// Checks run on a fixed set of worker goroutines instead of one new goroutine per stream:
	// a Check's call depth grows a fresh goroutine's stack, and copying stacks cost about a
	// sixth of the CPU under load; a worker's stack stays grown. A stream that finds every
	// worker busy gets a goroutine of its own, so there are enough workers for the checks Envoy
	// keeps in flight, not just one per CPU.
	opts := []grpc.ServerOption{grpc.NumStreamWorkers(uint32(max(64, 16*runtime.GOMAXPROCS(0))))}
	if tlsConfig != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tlsConfig)))
	}
	return opts
}

// DefaultGCPercent is the garbage collector's target serve runs with unless GOGC is set: the
// live heap is small (the policy, in-flight checks) and nearly every allocation is per request,
// so collecting at 5x the live heap instead of 2x spends far less CPU on GC for a few more MB.
const DefaultGCPercent = 400

// SetGC sets the garbage collector as serve runs it: DefaultGCPercent, unless GOGC is set.
func SetGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(DefaultGCPercent)
	}
}
