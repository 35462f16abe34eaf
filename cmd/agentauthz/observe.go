package main

import (
	"github.com/spf13/pflag"

	"github.com/agentauthz/agentauthz/internal/service"
	"github.com/agentauthz/agentauthz/internal/tracing"
)

// observabilityFlags adds serve's flags for tracing and gRPC reflection to fs.
func observabilityFlags(fs *pflag.FlagSet, cfg *service.Config) {
	fs.BoolVar(&cfg.GRPCReflection, "grpc-reflection", false, "serve gRPC server reflection on the gRPC listener, so that grpcurl can list and call its services without .proto files (it tells whoever reaches the listener every service it serves)")
	fs.StringVar(&cfg.Tracing.Endpoint, "otlp-traces-endpoint", "", "export an OpenTelemetry span of each decision to this OTLP receiver, http://HOST:PORT (plaintext) or https://HOST:PORT; the span is a child of the traceparent header Envoy forwards (default: no tracing)")
	fs.StringVar(&cfg.Tracing.Protocol, "otlp-traces-protocol", tracing.ProtocolGRPC, "OTLP transport of --otlp-traces-endpoint: grpc (a collector's port 4317) or http/protobuf (4318; a URL without a path gets /v1/traces)")
}
