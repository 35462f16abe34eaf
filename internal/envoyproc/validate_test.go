package envoyproc

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tlsConfig is a listener with a certificate from files and a cluster whose certificate comes
// over SDS from a unix socket, for what validate mode needs to exist. (SDS needs the node's id
// and cluster.)
const tlsConfig = `
node: {id: "validate-test", cluster: "validate-test"}
static_resources:
  listeners:
    - name: tls
      address: {socket_address: {address: 127.0.0.1, port_value: 0}}
      filter_chains:
        - transport_socket:
            name: envoy.transport_sockets.tls
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
              common_tls_context:
                tls_certificates:
                  - certificate_chain: {filename: CERT}
                    private_key: {filename: KEY}
          filters:
            - name: envoy.filters.network.tcp_proxy
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
                stat_prefix: tls
                cluster: sds_backed
                access_log:
                  - name: envoy.access_loggers.file
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
                      path: ACCESSLOG
  clusters:
    - name: sds_backed
      type: STRICT_DNS
      load_assignment:
        cluster_name: sds_backed
        endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: backend.invalid, port_value: 443}}}}]}]
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
          common_tls_context:
            tls_certificate_sds_secret_configs:
              - name: some-secret
                sds_config:
                  resource_api_version: V3
                  api_config_source:
                    api_type: GRPC
                    transport_api_version: V3
                    grpc_services: [{envoy_grpc: {cluster_name: sds}}]
    - name: sds
      type: STATIC
      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config: {http2_protocol_options: {}}
      load_assignment:
        cluster_name: sds
        endpoints: [{lb_endpoints: [{endpoint: {address: {pipe: {path: /nonexistent/sds.sock}}}}]}]
`

// TestValidateNeeds pins what envoy --mode validate needs to exist: the certificate and key
// files a configuration names, and the directory of a file access log (validate creates the
// log). It does not fetch SDS secrets, connect to unix sockets, resolve names or bind ports.
func TestValidateNeeds(t *testing.T) {
	dir := t.TempDir()
	cert, key := writeSelfSigned(t, dir)
	render := func(repl map[string]string) string {
		out, err := Render([]byte(tlsConfig), repl)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(p, out, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := map[string]string{"CERT": cert, "KEY": key, "ACCESSLOG": filepath.Join(dir, "access.log")}
	Validate(t, render(good))
	if _, err := os.Stat(good["ACCESSLOG"]); err != nil {
		t.Errorf("validate did not create the access log: %v", err)
	}

	for name, change := range map[string][2]string{
		"missing key":           {"KEY", filepath.Join(dir, "no-key.pem")},
		"missing cert":          {"CERT", filepath.Join(dir, "no-cert.pem")},
		"access log dir absent": {"ACCESSLOG", filepath.Join(dir, "no", "access.log")},
	} {
		repl := map[string]string{}
		for k, v := range good {
			repl[k] = v
		}
		repl[change[0]] = change[1]
		out, err := TryValidate(t, render(repl))
		if err == nil || !strings.Contains(out, filepath.Base(change[1])) {
			t.Errorf("%s: validate passed or did not name %s: %v\n%s", name, change[1], err, out)
		}
	}
}

// writeSelfSigned writes a self-signed certificate and its key as PEM files in dir.
func writeSelfSigned(t *testing.T, dir string) (certPath, keyPath string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "envoyproc test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}
