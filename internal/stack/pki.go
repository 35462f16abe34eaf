package stack

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"testing"
	"time"
)

// The SPIFFE IDs the shipped Envoy configurations and the demo policy name.
const (
	TrustDomainID = "spiffe://acme.internal"
	EnvoyID       = "spiffe://acme.internal/envoy"
	AgentauthzID  = "spiffe://acme.internal/agentauthz"
	HelpdeskAgent = "spiffe://acme.internal/agent/helpdesk"
	BIAgent       = "spiffe://acme.internal/agent/bi"
	HelpdeskAPIID = "spiffe://acme.internal/api/helpdesk"
	BIAPIID       = "spiffe://acme.internal/api/bi"
)

// PKI is a test SPIFFE trust domain (acme.internal): one CA, and X.509-SVIDs issued by it (a
// URI SAN, no DNS name), as SPIRE would issue them.
type PKI struct {
	CA *x509.Certificate
	// CAPEM is the trust bundle, PEM.
	CAPEM []byte
	// Pool holds the CA.
	Pool *x509.CertPool
	key  *ecdsa.PrivateKey
}

// NewPKI makes a CA for the trust domain, valid for a day.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(t),
		Subject:               pkix.Name{Organization: []string{"acme.internal test CA"}},
		URIs:                  []*url.URL{mustURL(TrustDomainID)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	p := &PKI{CA: ca, key: key, CAPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), Pool: x509.NewCertPool()}
	p.Pool.AddCert(ca)
	return p
}

// SVID is an issued X.509-SVID, as Go uses it and as PEM for Envoy.
type SVID struct {
	ID              string
	Cert            tls.Certificate
	CertPEM, KeyPEM []byte
}

// Issue issues an X.509-SVID for the SPIFFE ID id, for client and server use.
func (p *PKI) Issue(t testing.TB, id string) SVID {
	t.Helper()
	return p.IssueURIs(t, id)
}

// IssueURIs issues a certificate of the trust domain's CA with the URI SANs given, in order: with
// more than one, not an X.509-SVID (SPIRE never issues one), for tests of what Envoy and
// agentauthz make of it. SVID.ID is the first.
func (p *PKI) IssueURIs(t testing.TB, uris ...string) SVID {
	t.Helper()
	var sans []*url.URL
	for _, u := range uris {
		sans = append(sans, mustURL(u))
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(t),
		URIs:         sans,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.CA, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	s := SVID{
		ID:      uris[0],
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}),
	}
	if s.Cert, err = tls.X509KeyPair(s.CertPEM, s.KeyPEM); err != nil {
		t.Fatal(err)
	}
	return s
}

// ServerTLS is a TLS 1.3 server configuration presenting s and requiring a client certificate
// of the trust domain.
func (p *PKI) ServerTLS(s SVID) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{s.Cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.Pool,
		MinVersion:   tls.VersionTLS13,
	}
}

// ServerTLSFor is ServerTLS admitting only clients whose SPIFFE ID is one of ids, as
// agentauthz's --grpc-allowed-clients does.
func (p *PKI) ServerTLSFor(s SVID, ids ...string) *tls.Config {
	c := p.ServerTLS(s)
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		got := URISAN(cs.PeerCertificates)
		for _, id := range ids {
			if got == id {
				return nil
			}
		}
		return fmt.Errorf("client %q may not connect", got)
	}
	return c
}

// BackendTLS is ServerTLS for a backend API: TLS 1.2 or 1.3, since the shipped backend clusters
// leave Envoy's client at its default, which offers at most TLS 1.2.
func (p *PKI) BackendTLS(s SVID) *tls.Config {
	c := p.ServerTLS(s)
	c.MinVersion = tls.VersionTLS12
	return c
}

// ClientTLS is a client's TLS configuration: it presents s (none when nil) and accepts only a
// server certificate of the trust domain whose SPIFFE ID is serverID (SVIDs have no DNS name to
// check).
func (p *PKI) ClientTLS(s *SVID, serverID string, alpn ...string) *tls.Config {
	c := &tls.Config{
		MinVersion:         tls.VersionTLS13,
		NextProtos:         alpn,
		InsecureSkipVerify: true, // replaced by VerifyConnection: the SPIFFE ID, not a host name
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no server certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: p.Pool, Intermediates: inter}); err != nil {
				return err
			}
			if got := URISAN(cs.PeerCertificates); got != serverID {
				return fmt.Errorf("server is %q, want %s", got, serverID)
			}
			return nil
		},
	}
	if s != nil {
		c.Certificates = []tls.Certificate{s.Cert}
	}
	return c
}

// URISAN is the first URI SAN of the leaf certificate, or "".
func URISAN(certs []*x509.Certificate) string {
	if len(certs) == 0 || len(certs[0].URIs) == 0 {
		return ""
	}
	return certs[0].URIs[0].String()
}

func randomSerial(t testing.TB) *big.Int {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	return serial
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}
