package service

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/agentauthz/agentauthz/internal/authzen"
)

// SPIFFEConfig configures agentauthz's own SPIFFE identity and the JWT bundles it validates
// agents' JWT-SVIDs with.
type SPIFFEConfig struct {
	// Socket is the Workload API socket (unix:///path): gRPC is then served over mTLS with
	// agentauthz's X.509-SVID (and the HTTP listener over TLS with it, with HTTPConfig.TLSSPIFFE).
	Socket string
	// AllowedClients is the comma-separated SPIFFE IDs (Envoy's) that may call Check over mTLS.
	AllowedClients string
	// JWTBundles are TRUST_DOMAIN=FILE specs of JWT bundles (JWKS) for agents' JWT-SVIDs.
	JWTBundles []string
}

// spiffe is what serve gets from the Workload API or bundle files.
type spiffe struct {
	tls *tls.Config
	// authzenTLS serves the AuthZEN listener: the same SVID, client certificates verified when
	// sent but not required.
	authzenTLS *tls.Config
	// httpTLS serves the HTTP listener with the same SVID, asking for no client certificate.
	httpTLS *tls.Config
	bundles jwtbundle.Source
	closers []io.Closer
}

func (s *spiffe) Close() {
	for _, c := range s.closers {
		_ = c.Close() // shutting down; the sources hold only a Workload API stream
	}
}

// openSPIFFE connects to the Workload API when a socket is given: the gRPC listener then serves
// mTLS with agentauthz's X.509-SVID (rotated without restart), accepting only the allowed
// clients, and the JWT bundles come from it too. Bundle files add JWT bundles without it.
func openSPIFFE(ctx context.Context, f SPIFFEConfig) (*spiffe, error) {
	out := &spiffe{}
	ids, err := parseIDs("--grpc-allowed-clients", f.AllowedClients)
	if err != nil {
		return nil, err
	}
	if len(ids) > 0 && f.Socket == "" {
		// Without the Workload API there is no mTLS: serving plaintext to every caller while the
		// operator believes only these clients may call would fail open.
		return nil, fmt.Errorf("--grpc-allowed-clients needs --spiffe-socket: mTLS is served with the SVID from the Workload API")
	}
	if f.Socket != "" {
		if len(ids) == 0 {
			return nil, fmt.Errorf("--spiffe-socket needs --grpc-allowed-clients: the SPIFFE IDs (Envoy's) that may call Check")
		}
		wait, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		opts := workloadapi.WithClientOptions(workloadapi.WithAddr(f.Socket))
		x509, err := workloadapi.NewX509Source(wait, opts)
		if err != nil {
			return nil, fmt.Errorf("--spiffe-socket: no X.509-SVID from the Workload API at %s: %v", f.Socket, err)
		}
		out.closers = append(out.closers, x509)
		out.tls = tlsconfig.MTLSServerConfig(x509, x509, tlsconfig.AuthorizeOneOf(ids...))
		out.authzenTLS = authzen.TLSConfig(x509, x509)
		out.httpTLS = tlsconfig.TLSServerConfig(x509)
		if len(f.JWTBundles) == 0 {
			jwt, err := workloadapi.NewJWTSource(wait, opts)
			if err != nil {
				out.Close()
				return nil, fmt.Errorf("--spiffe-socket: no JWT bundles from the Workload API: %v", err)
			}
			out.closers = append(out.closers, jwt)
			out.bundles = jwt
		}
	}
	if len(f.JWTBundles) > 0 {
		set, err := LoadJWTBundles(f.JWTBundles)
		if err != nil {
			out.Close()
			return nil, err
		}
		out.bundles = set
	}
	return out, nil
}

// LoadJWTBundles reads TRUST_DOMAIN=FILE specs (JWKS files) into a bundle set.
func LoadJWTBundles(specs []string) (*jwtbundle.Set, error) {
	set := jwtbundle.NewSet()
	for _, spec := range specs {
		tdName, path, ok := strings.Cut(spec, "=")
		if !ok {
			return nil, fmt.Errorf("--jwt-bundle %q: write TRUST_DOMAIN=FILE", spec)
		}
		td, err := spiffeid.TrustDomainFromString(tdName)
		if err != nil {
			return nil, fmt.Errorf("--jwt-bundle %q: %v", spec, err)
		}
		b, err := jwtbundle.Load(td, path)
		if err != nil {
			return nil, fmt.Errorf("--jwt-bundle %q: %v", spec, err)
		}
		set.Add(b)
	}
	return set, nil
}

func parseIDs(flag, list string) ([]spiffeid.ID, error) {
	var ids []spiffeid.ID
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		id, err := spiffeid.FromString(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a SPIFFE ID: %v", flag, s, err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}
