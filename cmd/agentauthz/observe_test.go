package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestServeRefusesTracingFlags: an OTLP endpoint or protocol serve cannot use is one line and
// exit 2, before anything is loaded or listened on.
func TestServeRefusesTracingFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--otlp-traces-endpoint", "collector:4317"}, `agentauthz serve: tracing: endpoint "collector:4317" is not http://host:port or https://host:port`},
		{[]string{"--otlp-traces-endpoint", "http://collector:4317", "--otlp-traces-protocol", "zipkin"}, `agentauthz serve: tracing: protocol "zipkin" is not grpc or http/protobuf`},
		{[]string{"--otlp-traces-protocol", "zipkin"}, `agentauthz serve: tracing: protocol "zipkin"`},
		{[]string{"--otlp-traces-endpoint", "http://u:secret@collector:4317"}, "carries credentials"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			setCredential(t)
			t.Setenv("AGENTAUTHZ_DEMO_APPROVER_TOKEN", "")
			args := append([]string{"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "", "--data-dir", filepath.Join(t.TempDir(), "data")}, tc.args...)
			r := cli(t, args...)
			r.want(t, exitUsage)
			oneLine(t, "stderr", r.stderr)
			if !strings.Contains(r.stderr, tc.want) || strings.Contains(r.stderr, "secret") || r.stdout != "" {
				t.Errorf("stdout %q, stderr %q; want %q", r.stdout, r.stderr, tc.want)
			}
		})
	}
}
