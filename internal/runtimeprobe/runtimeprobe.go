// Package runtimeprobe serves a process's Go profiles (net/http/pprof) and its runtime's CPU and
// heap accounting (runtime/metrics) on a loopback listener, for load harnesses
// (cmd/authzbench): agentauthz built with -tags pprof, and the harness's no-op server.
package runtimeprobe

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime/metrics"
)

// Metrics are the runtime/metrics the probe answers at /debug/runtime, as a JSON object of
// numbers: CPU classes (the garbage collector's share of CPU comes from these exactly, not
// from samples), collections, heap allocations, and what the runtime's memory is made of (the
// classes add up to /memory/classes/total; all but heap/released are resident or may be), with
// the heap goal and the soft memory limit that set how far the heap grows between collections.
var Metrics = []string{
	"/cpu/classes/gc/total:cpu-seconds", "/cpu/classes/total:cpu-seconds", "/cpu/classes/idle:cpu-seconds",
	"/gc/cycles/total:gc-cycles", "/gc/heap/allocs:objects", "/gc/heap/allocs:bytes", "/gc/heap/live:bytes",
	"/memory/classes/total:bytes",
	"/memory/classes/heap/objects:bytes", "/memory/classes/heap/unused:bytes", "/memory/classes/heap/free:bytes",
	"/memory/classes/heap/released:bytes", "/memory/classes/heap/stacks:bytes", "/memory/classes/os-stacks:bytes",
	"/memory/classes/metadata/other:bytes", "/memory/classes/metadata/mspan/inuse:bytes",
	"/memory/classes/metadata/mspan/free:bytes", "/memory/classes/metadata/mcache/inuse:bytes",
	"/memory/classes/metadata/mcache/free:bytes", "/memory/classes/profiling/buckets:bytes",
	"/memory/classes/other:bytes", "/gc/heap/goal:bytes", "/gc/gomemlimit:bytes", "/gc/gogc:percent",
	"/gc/stack/starting-size:bytes", "/gc/scan/stack:bytes", "/gc/scan/globals:bytes", "/sched/goroutines:goroutines",
}

// Serve listens on addr, which must be a loopback host:port, and serves /debug/pprof/ and
// /debug/runtime until the process exits.
func Serve(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("runtimeprobe: %q is not a loopback host:port", addr)
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("runtimeprobe: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/runtime", serveMetrics)
	go func() { _ = http.Serve(lis, mux) }() // until the process exits
	return nil
}

func serveMetrics(w http.ResponseWriter, _ *http.Request) {
	samples := make([]metrics.Sample, len(Metrics))
	for i, n := range Metrics {
		samples[i].Name = n
	}
	metrics.Read(samples)
	out := make(map[string]float64, len(samples))
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
