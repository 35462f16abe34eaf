//go:build linux

package spiffetest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/agentauthz/agentauthz/internal/childproc"
	"github.com/agentauthz/agentauthz/internal/spire"
	"github.com/agentauthz/agentauthz/internal/spire/spiretest"
)

// setupDeadline bounds each wait for SPIRE or agentauthz to come up.
const setupDeadline = 60 * time.Second

// freeAddr is a loopback host:port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	port, err := spire.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(port)
}

// startProcess runs bin with its output in dir/name.log until the test ends.
func startProcess(t *testing.T, dir, name string, env []string, bin string, args ...string) *childproc.Proc {
	t.Helper()
	p, err := childproc.Start(childproc.Spec{Name: name, Path: bin, Args: args, Env: env, Log: filepath.Join(dir, name+".log")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(15 * time.Second); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			spiretest.DumpLog(t, p)
		}
	})
	return p
}

// waitFor polls cond until it succeeds, the process it depends on exits, or the deadline passes.
func waitFor(t *testing.T, what string, p *childproc.Proc, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(setupDeadline)
	delay := 50 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return
		}
		if p != nil {
			if done, exitErr := p.Exited(); done {
				t.Fatalf("waiting for %s: %s exited: %v (last error: %v)", what, p.Name(), exitErr, err)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: not within %s: %v", what, setupDeadline, err)
		}
		time.Sleep(delay)
		delay = min(delay*2, time.Second)
	}
}

// serverCLI runs the spire-server command line against s and returns its standard output.
func serverCLI(t *testing.T, s *spire.SPIRE, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := s.Server.Run(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// register creates an entry for the program at path, under the agent's node.
func register(t *testing.T, s *spire.SPIRE, id spiffeid.ID, path string, ttl time.Duration) {
	t.Helper()
	spiretest.Register(t, s, spire.Entry{ID: id, Selectors: []string{"unix:path:" + path}, X509SVIDTTL: ttl})
}

func wlOpt(s *spire.SPIRE) workloadapi.ClientOption { return workloadapi.WithAddr(s.Agent.Addr()) }

// buildAgentauthz builds the agentauthz binary into dir.
func buildAgentauthz(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "agentauthz")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/agentauthz/agentauthz/cmd/agentauthz")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build agentauthz: %v\n%s", err, out)
	}
	return bin
}

// agentauthz is a running `agentauthz serve`.
type agentauthz struct {
	proc     *childproc.Proc
	grpcAddr string
	httpAddr string
}

// startAgentauthz runs `agentauthz serve` with its SVID from the Workload API, admitting only
// Envoy's SPIFFE ID over mTLS, with the extra arguments and environment.
func startAgentauthz(t *testing.T, s *spire.SPIRE, dir, bin string, env []string, extra ...string) *agentauthz {
	t.Helper()
	a := &agentauthz{grpcAddr: freeAddr(t), httpAddr: freeAddr(t)}
	args := append([]string{"serve",
		"--spiffe-socket", s.Agent.Addr(),
		"--grpc-allowed-clients", envoyID.String(),
		"--grpc-addr", a.grpcAddr,
		"--http-addr", a.httpAddr,
		"--data-dir", filepath.Join(dir, "agentauthz-data"),
	}, extra...)
	a.proc = startProcess(t, dir, "agentauthz", env, bin, args...)
	waitFor(t, "agentauthz /readyz", a.proc, func() error {
		resp, err := http.Get("http://" + a.httpAddr + "/readyz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/readyz: %d %s", resp.StatusCode, body)
		}
		return nil
	})
	return a
}

// decisions is the number of decisions agentauthz has made, from /metrics.
func (a *agentauthz) decisions(t *testing.T) float64 {
	t.Helper()
	resp, err := http.Get("http://" + a.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var n float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "agentauthz_decisions_total{") {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("/metrics: %q: %v", line, err)
		}
		n += v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// x509Source is the test binary's X.509 source presenting the SVID for id.
func x509Source(t *testing.T, s *spire.SPIRE, id spiffeid.ID) *workloadapi.X509Source {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupDeadline)
	defer cancel()
	src, err := workloadapi.NewX509Source(ctx,
		workloadapi.WithClientOptions(wlOpt(s)),
		workloadapi.WithDefaultX509SVIDPicker(func(svids []*x509svid.SVID) *x509svid.SVID {
			for _, svid := range svids {
				if svid.ID == id {
					return svid
				}
			}
			return nil
		}))
	if err != nil {
		t.Fatalf("X.509 source for %s: %v", id, err)
	}
	t.Cleanup(func() { src.Close() })
	svid, err := src.GetX509SVID()
	if err != nil || svid.ID != id {
		t.Fatalf("X.509 source for %s holds %v (%v)", id, svid, err)
	}
	return src
}
