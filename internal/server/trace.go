package server

import (
	"context"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// traceContext reads the W3C trace context (traceparent, tracestate) of a gRPC call.
var traceContext propagation.TraceContext

// traceCalls puts the trace context of each gRPC call's metadata in its context: Envoy, when it
// traces, sends its ext_authz call's span there, and the engine's span of the decision becomes a
// child of it (engine.Config.Tracer). A call without one, or with a malformed or repeated one,
// keeps the context it has; the engine then looks in the request's own headers. Installed only
// when tracing is on.
func traceCalls(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if sc := trace.SpanContextFromContext(traceContext.Extract(context.Background(), metadataCarrier(md))); sc.IsValid() {
			ctx = trace.ContextWithRemoteSpanContext(ctx, sc)
		}
	}
	return handler(ctx, req)
}

// metadataCarrier reads a trace context from gRPC metadata. A key sent more than once is
// ambiguous and read as absent.
type metadataCarrier metadata.MD

func (c metadataCarrier) Get(key string) string {
	v := metadata.MD(c).Get(key)
	if len(v) != 1 {
		return ""
	}
	return v[0]
}

func (metadataCarrier) Set(string, string) {}

func (metadataCarrier) Keys() []string { return nil }
