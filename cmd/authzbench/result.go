package main

import (
	"slices"
	"time"
)

// result is one measurement of one target.
type result struct {
	Target   string  `json:"target"`
	Scenario string  `json:"scenario"`
	Mode     string  `json:"mode"`
	Round    int     `json:"round"`
	RPS      float64 `json:"rps"`
	P50us    float64 `json:"p50_us"`
	P99us    float64 `json:"p99_us"`
	P999us   float64 `json:"p999_us"`
	Errors   int64   `json:"errors"`
	Wrong    int64   `json:"wrong_answers"`
	// CPUus is CPU time per request of each process of the set-up (server, envoy), µs.
	CPUus map[string]float64 `json:"cpu_us_per_request,omitempty"`
	// AllocsPerCheck and GCShare are agentauthz's, from its runtime: heap allocations per
	// request, and the garbage collector's share of the CPU it used.
	AllocsPerCheck float64 `json:"allocs_per_check,omitempty"`
	BytesPerCheck  float64 `json:"bytes_per_check,omitempty"`
	GCShare        float64 `json:"gc_share,omitempty"`
	// RSS is the server's largest resident set during the run, and its anonymous part, MiB.
	RSS     float64 `json:"rss_mib,omitempty"`
	RSSAnon float64 `json:"rss_anon_mib,omitempty"`
	// HeapLive and GoMemory are the runtime's live heap after the last collection and all the
	// memory it holds, at the end of the run, MiB.
	HeapLive float64 `json:"heap_live_mib,omitempty"`
	GoMemory float64 `json:"go_memory_mib,omitempty"`
	// GoClasses is what the runtime's memory is made of at the end of the run (memoryClasses).
	GoClasses map[string]float64 `json:"go_memory_classes,omitempty"`
	Load      string             `json:"load_average"`
}

func flatten(ls [][]time.Duration) []time.Duration {
	var out []time.Duration
	for _, l := range ls {
		out = append(out, l...)
	}
	return out
}

func latencies(l []time.Duration) result {
	slices.Sort(l)
	return result{P50us: percentile(l, 0.50), P99us: percentile(l, 0.99), P999us: percentile(l, 0.999)}
}
