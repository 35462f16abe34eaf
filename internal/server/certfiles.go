package server

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// CertCheckEvery is how often, at most, CertFiles looks at its files for a new certificate.
const CertCheckEvery = 5 * time.Second

// CertFiles is a TLS certificate and key read from PEM files, served by GetCertificate and
// reloaded when the files change: they are read again on a handshake at most every
// CertCheckEvery, and at once on Reload (SIGHUP). A pair that does not load (a key that does
// not match, a file half written) is logged, and the last good pair keeps serving.
type CertFiles struct {
	certPath, keyPath string
	log               *slog.Logger
	// Clock is injected for tests; nil means time.Now.
	Clock func() time.Time

	mu      sync.Mutex
	cert    *tls.Certificate
	certPEM []byte // the files' bytes when cert was loaded, or when a load last failed
	keyPEM  []byte
	checked time.Time
	failed  string // why the files last failed to load, until they load
}

// LoadCertFiles reads the certificate chain and key at certPath and keyPath; it fails unless
// they load and match.
func LoadCertFiles(certPath, keyPath string, log *slog.Logger) (*CertFiles, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &CertFiles{certPath: certPath, keyPath: keyPath, log: log}
	certPEM, keyPEM, err := c.read()
	if err != nil {
		return nil, err
	}
	cert, err := parsePair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s, %s: %v", certPath, keyPath, err)
	}
	c.cert, c.certPEM, c.keyPEM = cert, certPEM, keyPEM
	c.checked = c.now()
	return c, nil
}

func (c *CertFiles) now() time.Time {
	if c.Clock != nil {
		return c.Clock()
	}
	return time.Now()
}

func (c *CertFiles) read() (certPEM, keyPEM []byte, err error) {
	if certPEM, err = os.ReadFile(c.certPath); err != nil {
		return nil, nil, err
	}
	if keyPEM, err = os.ReadFile(c.keyPath); err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}

func parsePair(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, err
		}
	}
	return &cert, nil
}

// GetCertificate is tls.Config.GetCertificate: the current certificate, looked at again when
// the last look is CertCheckEvery old.
func (c *CertFiles) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := c.now(); now.Sub(c.checked) >= CertCheckEvery {
		c.checked = now
		_ = c.reloadLocked() // logged; the last good certificate serves
	}
	return c.cert, nil
}

// Reload reads the files now and serves their certificate if it loads; otherwise it returns
// why (logged), and the last good certificate keeps serving. Unchanged files are no error.
func (c *CertFiles) Reload() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.checked = c.now()
	return c.reloadLocked()
}

func (c *CertFiles) reloadLocked() error {
	certPEM, keyPEM, err := c.read()
	if err == nil && bytes.Equal(certPEM, c.certPEM) && bytes.Equal(keyPEM, c.keyPEM) {
		if c.failed != "" {
			return errors.New(c.failed) // as failed already, and logged then
		}
		return nil
	}
	var cert *tls.Certificate
	if err == nil {
		cert, err = parsePair(certPEM, keyPEM)
		c.certPEM, c.keyPEM = certPEM, keyPEM
	}
	if err != nil {
		if err.Error() != c.failed { // once per problem, not at every look
			c.log.Error("the HTTP listener's TLS certificate did not reload; the previous one keeps serving",
				"cert", c.certPath, "key", c.keyPath, "error", err.Error(), "serving_not_after", c.cert.Leaf.NotAfter)
		}
		c.failed = err.Error()
		return err
	}
	c.cert, c.failed = cert, ""
	c.log.Info("the HTTP listener's TLS certificate reloaded", "cert", c.certPath,
		"subject", cert.Leaf.Subject.String(), "not_after", cert.Leaf.NotAfter)
	return nil
}

// Leaf is the certificate serving now.
func (c *CertFiles) Leaf() *x509.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cert.Leaf
}
