//go:build linux

package spiffetest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/agentauthz/agentauthz/internal/spire"
	"github.com/agentauthz/agentauthz/internal/spire/spiretest"
)

// The identities SPIRE issues in this test. agentauthz runs as its own binary; the test binary
// itself is entitled to the other three, and picks one per connection or token.
var (
	trustDomain  = spiffeid.RequireTrustDomainFromString("acme.internal")
	nodeID       = spiffeid.RequireFromPath(trustDomain, "/node")
	agentauthzID = spiffeid.RequireFromPath(trustDomain, "/agentauthz")
	envoyID      = spiffeid.RequireFromPath(trustDomain, "/envoy")
	intruderID   = spiffeid.RequireFromPath(trustDomain, "/intruder")
	helpdeskID   = spiffeid.RequireFromPath(trustDomain, "/agent/helpdesk")
	biID         = spiffeid.RequireFromPath(trustDomain, "/agent/bi")
)

const (
	// helpdeskHost accepts JWT-SVIDs for this audience (testdata/policy/acme.yaml).
	helpdeskHost = "helpdesk.acme.internal"
	reportsHost  = "reports.acme.internal"
	// upstreamKey is the helpdesk API credential agentauthz injects.
	upstreamKey = "SENTINEL-spiffetest-helpdesk-key"
	// agentauthzSVIDTTL is short so that agentauthz's X.509-SVID rotates during the test.
	agentauthzSVIDTTL = 20 * time.Second
)

func dial(t *testing.T, addr string, creds credentials.TransportCredentials) authv3.AuthorizationClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return authv3.NewAuthorizationClient(conn)
}

func rpcCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// checkRequest is what Envoy asks about GET host path, from principal ("" for a caller without
// mTLS), with headers.
func checkRequest(principal, host, path string, headers map[string]string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Principal: principal},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Host: host, Path: path, Headers: headers,
		}},
	}}
}

// answer is what the tests read from a CheckResponse.
type answer struct {
	allow   bool
	status  int
	code    string
	agent   string
	removed []string
	set     map[string]string
}

func (a answer) String() string {
	return fmt.Sprintf("allow=%v status=%d code=%s agent=%q removed=%q", a.allow, a.status, a.code, a.agent, a.removed)
}

func check(t *testing.T, c authv3.AuthorizationClient, req *authv3.CheckRequest) answer {
	t.Helper()
	resp, err := c.Check(rpcCtx(t), req)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	meta := resp.GetDynamicMetadata().AsMap()
	a := answer{set: map[string]string{}}
	a.code, _ = meta["code"].(string)
	a.agent, _ = meta["agent"].(string)
	switch r := resp.GetHttpResponse().(type) {
	case *authv3.CheckResponse_OkResponse:
		a.allow, a.status = true, 200
		a.removed = r.OkResponse.GetHeadersToRemove()
		for _, h := range r.OkResponse.GetHeaders() {
			a.set[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
	case *authv3.CheckResponse_DeniedResponse:
		a.status = int(r.DeniedResponse.GetStatus().GetCode())
	default:
		t.Fatalf("CheckResponse without http_response: %v", resp)
	}
	return a
}

func (a answer) wantAllow(t *testing.T, agent spiffeid.ID) {
	t.Helper()
	if !a.allow || a.agent != agent.String() {
		t.Errorf("got %v, want allowed as %s", a, agent)
	}
}

func (a answer) wantDeny(t *testing.T, status int, code string) {
	t.Helper()
	if a.allow || a.status != status || a.code != code {
		t.Errorf("got %v, want a %d %s deny", a, status, code)
	}
}

// wantRefused checks that a Check over creds fails at the transport, without a decision.
func wantRefused(t *testing.T, az *agentauthz, creds credentials.TransportCredentials) {
	t.Helper()
	before := az.decisions(t)
	c := dial(t, az.grpcAddr, creds)
	resp, err := c.Check(rpcCtx(t), checkRequest(helpdeskID.String(), helpdeskHost, "/v1/tickets", nil))
	if err == nil {
		t.Fatalf("Check answered %v, want the connection refused", resp)
	}
	if code := status.Code(err); code != codes.Unavailable {
		t.Errorf("Check failed with %s (%v), want Unavailable: a refused handshake", code, err)
	}
	t.Logf("refused as expected: %v", err)
	if after := az.decisions(t); after != before {
		t.Errorf("agentauthz made %v decisions for a refused client", after-before)
	}
}

func bearer(token string) map[string]string {
	return map[string]string{"authorization": "Bearer " + token}
}

// fetchJWT mints a JWT-SVID for the helpdesk agent through the Workload API.
func fetchJWT(t *testing.T, s *spire.SPIRE, audience string, extra ...string) string {
	t.Helper()
	svid, err := workloadapi.FetchJWTSVID(rpcCtx(t), jwtsvid.Params{
		Audience: audience, ExtraAudiences: extra, Subject: helpdeskID,
	}, wlOpt(s))
	if err != nil {
		t.Fatalf("FetchJWTSVID(%s): %v", audience, err)
	}
	if svid.ID != helpdeskID {
		t.Fatalf("FetchJWTSVID minted a token for %s, want %s", svid.ID, helpdeskID)
	}
	return svid.Marshal()
}

// tokenKeyID reads the kid of a compact JWS.
func tokenKeyID(t *testing.T, token string) string {
	t.Helper()
	h, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var header struct {
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(h, &header); err != nil {
		t.Fatal(err)
	}
	return header.Kid
}

// selfSigned is a JWT-SVID for the helpdesk agent signed with a key SPIRE never saw.
func selfSigned(t *testing.T, audience string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	in := enc(map[string]any{"alg": "ES256", "kid": "not-a-spire-key", "typ": "JWT"}) + "." +
		enc(map[string]any{"sub": helpdeskID.String(), "aud": []string{audience}, "exp": time.Now().Add(5 * time.Minute).Unix(), "iat": time.Now().Unix()})
	sum := sha256.Sum256([]byte(in))
	r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return in + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// TestSPIRE runs agentauthz with its identity from a real SPIRE agent, called over mTLS by an
// Envoy identity SPIRE issued, and deciding on JWT-SVIDs SPIRE minted.
func TestSPIRE(t *testing.T) {
	started := time.Now()
	dir := spiretest.ShortTempDir(t)
	s := spiretest.Start(t, spire.Options{Dir: dir, TrustDomain: trustDomain, Node: nodeID})
	t.Logf("SPIRE server and agent healthy after %s", time.Since(started).Round(time.Millisecond))

	azBin := buildAgentauthz(t, dir)
	self := spiretest.TestBinary(t)
	register(t, s, agentauthzID, azBin, agentauthzSVIDTTL)
	for _, id := range []spiffeid.ID{envoyID, intruderID, helpdeskID} {
		register(t, s, id, self, 0)
	}
	spiretest.WaitForSVIDs(t, s, envoyID, intruderID, helpdeskID)
	t.Logf("SVIDs served after %s", time.Since(started).Round(time.Millisecond))

	policyDir, err := filepath.Abs("testdata/policy")
	if err != nil {
		t.Fatal(err)
	}
	az := startAgentauthz(t, s, dir, azBin, []string{"AGENTAUTHZ_SPIFFETEST_HELPDESK_KEY=" + upstreamKey},
		"--policy", policyDir, "--decision-log", "off")
	t.Logf("agentauthz ready after %s", time.Since(started).Round(time.Millisecond))

	envoySrc := x509Source(t, s, envoyID)
	envoyTLS := tlsconfig.MTLSClientConfig(envoySrc, envoySrc, tlsconfig.AuthorizeID(agentauthzID))
	envoy := dial(t, az.grpcAddr, credentials.NewTLS(envoyTLS))

	t.Run("envoy over mTLS gets decisions", func(t *testing.T) {
		before := az.decisions(t)
		a := check(t, envoy, checkRequest(helpdeskID.String(), helpdeskHost, "/v1/tickets?limit=5",
			map[string]string{"authorization": "Bearer agent-own-token", "cookie": "session=1"}))
		a.wantAllow(t, helpdeskID)
		if a.set["x-api-key"] != upstreamKey {
			t.Errorf("headers set %v, want the helpdesk API key injected", a.set)
		}
		for _, h := range []string{"authorization", "cookie"} {
			if !slices.Contains(a.removed, h) {
				t.Errorf("headers_to_remove = %q, want %s", a.removed, h)
			}
		}
		check(t, envoy, checkRequest(biID.String(), helpdeskHost, "/v1/tickets", nil)).wantDeny(t, 403, "scope_missing")
		check(t, envoy, checkRequest(helpdeskID.String(), helpdeskHost, "/v1/tickets?limit=5000", nil)).wantDeny(t, 400, "query_invalid")
		// The count the refused clients are checked against does count decisions.
		if n := az.decisions(t) - before; n != 3 {
			t.Errorf("agentauthz_decisions_total grew by %v over 3 decisions", n)
		}
	})

	t.Run("the server presents agentauthz's SVID", func(t *testing.T) {
		cert := serverCert(t, az, envoySrc)
		id, err := x509svid.IDFromCert(cert)
		if err != nil || id != agentauthzID {
			t.Errorf("server certificate identity %v (%v), want %s", id, err, agentauthzID)
		}
		// A client expecting another server identity refuses agentauthz.
		wantRefused(t, az, credentials.NewTLS(tlsconfig.MTLSClientConfig(envoySrc, envoySrc,
			tlsconfig.AuthorizeID(spiffeid.RequireFromPath(trustDomain, "/not-agentauthz")))))
	})

	t.Run("intruder SVID refused", func(t *testing.T) {
		intruderSrc := x509Source(t, s, intruderID)
		wantRefused(t, az, credentials.NewTLS(tlsconfig.MTLSClientConfig(intruderSrc, intruderSrc, tlsconfig.AuthorizeID(agentauthzID))))
	})

	t.Run("no client certificate refused", func(t *testing.T) {
		wantRefused(t, az, credentials.NewTLS(tlsconfig.TLSClientConfig(envoySrc, tlsconfig.AuthorizeID(agentauthzID))))
	})

	t.Run("plaintext refused", func(t *testing.T) {
		wantRefused(t, az, insecure.NewCredentials())
	})

	t.Run("JWT-SVID", func(t *testing.T) {
		token := fetchJWT(t, s, helpdeskHost)
		list := "/v1/tickets?limit=5"

		a := check(t, envoy, checkRequest("", helpdeskHost, list, bearer(token)))
		a.wantAllow(t, helpdeskID)
		if !slices.Contains(a.removed, "authorization") {
			t.Errorf("headers_to_remove = %q: the JWT-SVID must not reach the upstream", a.removed)
		}
		if a.set["x-api-key"] != upstreamKey {
			t.Errorf("headers set %v, want the helpdesk API key injected", a.set)
		}

		parts := strings.Split(token, ".")
		sig := []byte(parts[2])
		mid := len(sig) / 2 // not the last character, which may carry only padding bits
		sig[mid] = map[bool]byte{true: 'B', false: 'A'}[sig[mid] == 'A']
		payload, err := base64.RawURLEncoding.DecodeString(parts[1])
		if err != nil {
			t.Fatal(err)
		}
		forgedPayload := bytes.Replace(payload, []byte(helpdeskID.String()), []byte(biID.String()), 1)
		if bytes.Equal(forgedPayload, payload) {
			t.Fatalf("the token's payload %s does not name %s", payload, helpdeskID)
		}
		forged := base64.RawURLEncoding.EncodeToString(forgedPayload)

		for _, tc := range []struct{ name, token string }{
			{"tampered signature", parts[0] + "." + parts[1] + "." + string(sig)},
			{"tampered payload", parts[0] + "." + forged + "." + parts[2]},
			{"wrong audience", fetchJWT(t, s, "bi.acme.internal")},
			{"unknown key", selfSigned(t, helpdeskHost)},
		} {
			t.Run(tc.name, func(t *testing.T) {
				a := check(t, envoy, checkRequest("", helpdeskHost, list, bearer(tc.token)))
				a.wantDeny(t, 401, "jwt_svid_invalid")
				if a.agent != "" {
					t.Errorf("agent %q identified by an invalid token", a.agent)
				}
			})
		}

		t.Run("X.509 identity wins", func(t *testing.T) {
			// With a principal the token is not read: a bad one does not refuse the request...
			a := check(t, envoy, checkRequest(helpdeskID.String(), helpdeskHost, list, bearer("garbage")))
			a.wantAllow(t, helpdeskID)
			if !slices.Contains(a.removed, "authorization") {
				t.Errorf("headers_to_remove = %q, want authorization", a.removed)
			}
			// ...and a good one for another agent does not change who is calling.
			bi := check(t, envoy, checkRequest(biID.String(), helpdeskHost, list, bearer(token)))
			bi.wantDeny(t, 403, "scope_missing")
			if bi.agent != biID.String() {
				t.Errorf("agent %q, want the X.509 identity %s", bi.agent, biID)
			}
		})

		t.Run("host without jwt_svid", func(t *testing.T) {
			reportsToken := fetchJWT(t, s, reportsHost)
			check(t, envoy, checkRequest("", reportsHost, "/v1/revenue", bearer(reportsToken))).wantDeny(t, 401, "identity_missing")
		})
	})

	t.Run("rotation without restart", func(t *testing.T) {
		t.Run("agentauthz's X.509-SVID", func(t *testing.T) {
			first := serverCert(t, az, envoySrc)
			if ttl := first.NotAfter.Sub(first.NotBefore); ttl > agentauthzSVIDTTL+time.Minute {
				t.Fatalf("agentauthz's SVID lives %s, want about %s (-x509SVIDTTL)", ttl, agentauthzSVIDTTL)
			}
			waitFor(t, "agentauthz to present a rotated SVID", az.proc, func() error {
				if c := serverCert(t, az, envoySrc); c.SerialNumber.Cmp(first.SerialNumber) == 0 {
					return errors.New("still the first SVID")
				}
				return nil
			})
			check(t, envoy, checkRequest(helpdeskID.String(), helpdeskHost, "/v1/tickets", nil)).wantAllow(t, helpdeskID)
		})

		t.Run("JWT authority", func(t *testing.T) {
			before := tokenKeyID(t, fetchJWT(t, s, helpdeskHost))
			prepared := authorityID(t, serverCLI(t, s, "localauthority", "jwt", "prepare", "-output", "json"))
			// The agent (and agentauthz, on the same stream) learns the prepared key with the bundle.
			waitFor(t, "the prepared JWT authority in the Workload API's bundle", nil, func() error {
				set, err := workloadapi.FetchJWTBundles(rpcCtx(t), wlOpt(s))
				if err != nil {
					return err
				}
				b, err := set.GetJWTBundleForTrustDomain(trustDomain)
				if err != nil {
					return err
				}
				if !b.HasJWTAuthority(prepared) {
					return fmt.Errorf("bundle holds %d keys, not yet %s", len(b.JWTAuthorities()), prepared)
				}
				return nil
			})
			serverCLI(t, s, "localauthority", "jwt", "activate", "-authorityID", prepared)
			// A new audience set is not in the agent's JWT-SVID cache, so SPIRE signs it now.
			token := fetchJWT(t, s, helpdeskHost, "after-rotation")
			if kid := tokenKeyID(t, token); kid != prepared || kid == before {
				t.Fatalf("after activation the token's kid is %q, want the new authority %q (was %q)", kid, prepared, before)
			}
			waitFor(t, "agentauthz to accept a token signed by the new authority", az.proc, func() error {
				if a := check(t, envoy, checkRequest("", helpdeskHost, "/v1/tickets", bearer(token))); !a.allow {
					return fmt.Errorf("got %v", a)
				}
				return nil
			})
		})
	})

	t.Logf("done after %s", time.Since(started).Round(time.Millisecond))
}

// serverCert is the certificate agentauthz presents on a new connection from the envoy identity.
func serverCert(t *testing.T, az *agentauthz, envoySrc *workloadapi.X509Source) *x509.Certificate {
	t.Helper()
	cfg := tlsconfig.MTLSClientConfig(envoySrc, envoySrc, tlsconfig.AuthorizeID(agentauthzID))
	cfg.NextProtos = []string{"h2"}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", az.grpcAddr, cfg)
	if err != nil {
		t.Fatalf("TLS handshake as %s: %v", envoyID, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// authorityID reads the authority_id from `spire-server localauthority jwt prepare -output json`.
func authorityID(t *testing.T, out string) string {
	t.Helper()
	var resp struct {
		PreparedAuthority struct {
			AuthorityID string `json:"authority_id"`
		} `json:"prepared_authority"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil || resp.PreparedAuthority.AuthorityID == "" {
		t.Fatalf("localauthority jwt prepare printed %q (%v), want prepared_authority.authority_id", out, err)
	}
	return resp.PreparedAuthority.AuthorityID
}
