//go:build pprof

package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime/metrics"
)

// startProfiling serves Go's profiles and runtime metrics on the loopback address in
// AGENTAUTHZ_PPROF_ADDR, for load harnesses (cmd/authzbench -profile). Only a binary built with
// -tags pprof has it; a shipped one has no such listener.
func startProfiling() {
	addr := os.Getenv("AGENTAUTHZ_PPROF_ADDR")
	if addr == "" {
		return
	}
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		fmt.Fprintf(os.Stderr, "agentauthz: AGENTAUTHZ_PPROF_ADDR %q is not a loopback host:port; no profiles served\n", addr)
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/runtime", runtimeMetrics)
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "agentauthz: profiles: %v\n", err)
		return
	}
	go func() { _ = http.Serve(lis, mux) }() // serves until the process exits
}

// runtimeMetrics answers the runtime's CPU accounting: the garbage collector's share of CPU
// comes from it exactly, not from samples.
func runtimeMetrics(w http.ResponseWriter, _ *http.Request) {
	names := []string{"/cpu/classes/gc/total:cpu-seconds", "/cpu/classes/total:cpu-seconds", "/cpu/classes/idle:cpu-seconds",
		"/gc/cycles/total:gc-cycles", "/gc/heap/allocs:objects", "/gc/heap/allocs:bytes", "/memory/classes/total:bytes", "/gc/heap/live:bytes"}
	samples := make([]metrics.Sample, len(names))
	for i, n := range names {
		samples[i].Name = n
	}
	metrics.Read(samples)
	out := map[string]float64{}
	for _, s := range samples {
		switch s.Value.Kind() {
		case metrics.KindFloat64:
			out[s.Name] = s.Value.Float64()
		case metrics.KindUint64:
			out[s.Name] = float64(s.Value.Uint64())
		}
	}
	w.Header().Set("content-type", "application/json")
	_ = json.NewEncoder(w).Encode(out) // a harness reads it
}
