//go:build pprof

package main

import (
	"fmt"
	"os"

	"github.com/agentauthz/agentauthz/internal/runtimeprobe"
)

// startProfiling serves Go's profiles and the runtime's CPU and heap accounting on the loopback
// address in AGENTAUTHZ_PPROF_ADDR, for load harnesses (cmd/authzbench). Only a binary built
// with -tags pprof has it; a shipped one has no such listener.
func startProfiling() {
	if addr := os.Getenv("AGENTAUTHZ_PPROF_ADDR"); addr != "" {
		if err := runtimeprobe.Serve(addr); err != nil {
			fmt.Fprintf(os.Stderr, "agentauthz: no profiles served: %v\n", err)
		}
	}
}
