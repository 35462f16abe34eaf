//go:build !pprof

package main

// startProfiling does nothing: profiles are served only by a binary built with -tags pprof.
func startProfiling() {}
