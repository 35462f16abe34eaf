package authzen

import (
	"crypto/tls"
	"crypto/x509"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// TLSConfig is the TLS configuration of an AuthZEN listener of its own: it presents svid (rotated
// as the source rotates it) and asks for a client certificate without requiring one. A
// certificate that is sent must be an X.509-SVID of a trust domain in bundles, or the handshake
// fails; a caller without one may still present a PEP token. Serve it with Config.VerifiedClientCerts.
func TLSConfig(svid x509svid.Source, bundles x509bundle.Source) *tls.Config {
	c := tlsconfig.TLSServerConfig(svid)
	c.MinVersion = tls.VersionTLS12
	c.ClientAuth = tls.RequestClientCert
	verify := tlsconfig.VerifyPeerCertificate(bundles, tlsconfig.AuthorizeAny())
	c.VerifyPeerCertificate = func(raw [][]byte, chains [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return nil // no certificate: the caller must present a token
		}
		return verify(raw, chains)
	}
	return c
}
