// Package tracing exports OpenTelemetry spans of agentauthz's decisions over OTLP. It is off
// unless an endpoint is configured; the engine then makes one span per decision, a child of the
// trace the request carries (engine.Config.Tracer), and this package batches and sends them.
//
// Only the exporter and the SDK live here: the engine sees the OpenTelemetry API alone
// (trace.Tracer), so that the decision path links no exporter, and a nil Tracer costs nothing.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/agentauthz/agentauthz/internal/version"
)

// The OTLP transports: Protobuf over gRPC (a collector's port 4317), or over HTTP (4318).
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http/protobuf"
)

// InstrumentationName names the tracer that makes agentauthz's spans.
const InstrumentationName = "github.com/agentauthz/agentauthz/internal/engine"

// Config says where spans go. The zero Config traces nothing.
type Config struct {
	// Endpoint is the OTLP receiver's URL: http://host:port sends in plaintext, https://host:port
	// over TLS verified with the system's roots. Over HTTP, a URL without a path gets OTLP's
	// /v1/traces. Empty turns tracing off.
	Endpoint string
	// Protocol is ProtocolGRPC (when empty) or ProtocolHTTP.
	Protocol string
	// BatchTimeout is the longest a span waits before it is sent; zero means the SDK's default
	// (5 s, or OTEL_BSP_SCHEDULE_DELAY).
	BatchTimeout time.Duration
}

// Provider exports the spans of one Tracer. A nil *Provider is tracing off.
type Provider struct {
	tp *sdktrace.TracerProvider
}

// Check refuses a Config that Start would refuse, without connecting to anything: an endpoint
// that is not an http or https URL with a host, or an unknown protocol.
func (c Config) Check() error {
	if c.Endpoint == "" {
		if c.Protocol != "" && c.Protocol != ProtocolGRPC && c.Protocol != ProtocolHTTP {
			return fmt.Errorf("tracing: protocol %q is not %s or %s", c.Protocol, ProtocolGRPC, ProtocolHTTP)
		}
		return nil
	}
	_, err := c.endpoint()
	return err
}

// endpoint is the checked URL spans are sent to.
func (c Config) endpoint() (*url.URL, error) {
	switch c.Protocol {
	case "", ProtocolGRPC, ProtocolHTTP:
	default:
		return nil, fmt.Errorf("tracing: protocol %q is not %s or %s", c.Protocol, ProtocolGRPC, ProtocolHTTP)
	}
	u, err := url.Parse(c.Endpoint)
	switch {
	case err != nil:
		return nil, fmt.Errorf("tracing: endpoint %q is not a URL", c.Endpoint)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("tracing: endpoint %q is not http://host:port or https://host:port", c.Endpoint)
	case u.Host == "" || u.Hostname() == "":
		return nil, fmt.Errorf("tracing: endpoint %q names no host", c.Endpoint)
	case u.User != nil:
		// Credentials in a URL end up in logs; a collector that needs them takes them from
		// OTEL_EXPORTER_OTLP_HEADERS.
		return nil, fmt.Errorf("tracing: endpoint %q carries credentials; use OTEL_EXPORTER_OTLP_HEADERS", u.Redacted())
	case u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("tracing: endpoint %q has a query or fragment", c.Endpoint)
	case c.Protocol != ProtocolHTTP && u.Path != "" && u.Path != "/":
		return nil, fmt.Errorf("tracing: endpoint %q has a path, which OTLP over gRPC has no use for", c.Endpoint)
	}
	if c.Protocol == ProtocolHTTP && (u.Path == "" || u.Path == "/") {
		u.Path = "/v1/traces"
	}
	return u, nil
}

// Start builds the exporter and the provider for c, or returns nil when c.Endpoint is empty.
// It does not wait for the receiver: spans are batched, and sent once it can be reached.
// Sampling follows the caller's trace (a parent sampled or not) and samples every new trace,
// unless OTEL_TRACES_SAMPLER says otherwise; OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
// add to the resource, OTEL_EXPORTER_OTLP_HEADERS to each export.
func Start(ctx context.Context, c Config) (*Provider, error) {
	if c.Endpoint == "" {
		return nil, c.Check()
	}
	u, err := c.endpoint()
	if err != nil {
		return nil, err
	}
	var exp sdktrace.SpanExporter
	if c.Protocol == ProtocolHTTP {
		exp, err = otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(u.String()))
	} else {
		exp, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(u.String()))
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter: %w", err)
	}
	build := version.Get()
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", "agentauthz"), attribute.String("service.version", build.Version)),
		resource.WithTelemetrySDK(),
		resource.WithFromEnv(), // last: the operator's OTEL_SERVICE_NAME wins
	)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	var batch []sdktrace.BatchSpanProcessorOption
	if c.BatchTimeout > 0 {
		batch = append(batch, sdktrace.WithBatchTimeout(c.BatchTimeout))
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp, batch...), sdktrace.WithResource(res))
	return &Provider{tp: tp}, nil
}

// Tracer is the tracer for the engine (engine.Config.Tracer); nil when p is nil.
func (p *Provider) Tracer() trace.Tracer {
	if p == nil {
		return nil
	}
	return p.tp.Tracer(InstrumentationName, trace.WithInstrumentationVersion(version.Get().Version))
}

// Shutdown sends the spans still batched, until ctx ends, and stops exporting.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p == nil {
		return nil
	}
	if err := p.tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	return nil
}

// PlaintextOffHost reports whether c sends spans in plaintext (http://) to another host than
// this one: spans name agents, hosts and decision ids, which then cross the network in the clear.
func (c Config) PlaintextOffHost() bool {
	u, err := c.endpoint()
	if c.Endpoint == "" || err != nil || u.Scheme != "http" {
		return false
	}
	h := u.Hostname()
	ip := net.ParseIP(h)
	return h != "localhost" && (ip == nil || !ip.IsLoopback())
}
