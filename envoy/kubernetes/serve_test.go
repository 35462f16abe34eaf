package kubernetes_test

import (
	"context"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/agentauthz/agentauthz/internal/stack"
)

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

// agentauthz builds the agentauthz binary once for the package's tests.
func agentauthz(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "agentauthz-chart-")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "agentauthz")
		// Built in agentauthz's own module, with its own go.mod: the binary a user builds, not
		// one with this module's dependency versions.
		cmd := exec.Command("go", "build", "-o", binary, "./cmd/agentauthz")
		cmd.Dir = filepath.Join("..", "..")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binary != "" {
		os.RemoveAll(filepath.Dir(binary))
	}
	os.Exit(code)
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// pod is an agentauthz container of a rendered chart, run as a process on this machine: its
// args and environment as rendered, with only addresses and paths moved into the test's
// reach (rewrite), and the policy ConfigMap's files where the container would find them.
type pod struct {
	cmd  *exec.Cmd
	out  strings.Builder
	done chan struct{}
}

func runContainer(t *testing.T, c corev1.Container, policy map[string]string, rewrite map[string]string) *pod {
	t.Helper()
	policyDir := t.TempDir()
	for name, content := range policy {
		if err := os.WriteFile(filepath.Join(policyDir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rewrite["--policy=/etc/agentauthz/policy"] = "--policy=" + policyDir
	rewrite["--data-dir=/var/lib/agentauthz"] = "--data-dir=" + t.TempDir()
	var args []string
	for _, a := range c.Args {
		if r, ok := rewrite[a]; ok {
			delete(rewrite, a)
			a = r
		}
		args = append(args, a)
	}
	if len(rewrite) > 0 {
		t.Fatalf("not in the container's args %v: %v", c.Args, rewrite)
	}
	p := &pod{done: make(chan struct{})}
	p.cmd = exec.Command(agentauthz(t), args...)
	p.cmd.Env = []string{"AGENTAUTHZ_HELPDESK_TOKEN=chart-test-token", "AGENTAUTHZ_DEMO_APPROVER_TOKEN=chart-test-approver"}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			t.Fatalf("env %s comes from %+v: give the test a value", e.Name, e.ValueFrom)
		}
		p.cmd.Env = append(p.cmd.Env, e.Name+"="+e.Value)
	}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("agentauthz %s:\n%s", strings.Join(args, " "), p.out.String())
		}
	})
	return p
}

// waitFor calls ok until it holds, failing if the process exits or a minute passes.
func (p *pod) waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !ok() {
		select {
		case <-p.done:
			t.Fatalf("agentauthz exited before %s:\n%s", what, p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within a minute", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func grpcServing(target string) bool {
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return false
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: authv3.Authorization_ServiceDesc.ServiceName})
	return err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING
}

func httpStatus(url string) int {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestChartServes runs the agentauthz container of the front-proxy Deployment (as in a service
// mesh: plaintext to its own sidecar) as a process, with the args, environment and policy the
// chart renders: the binary accepts them, serves Check, and answers every probe of the
// Deployment, on the port the probe names, with 200.
func TestChartServes(t *testing.T) {
	objs := mustRender(t, values(t, "istio/values-istio.yaml", map[string]any{"frontProxy": map[string]any{"replicas": 1}}))
	dep := only[*appsv1.Deployment](t, objs, 1)[0]
	c := container(t, dep.Spec.Template.Spec, "agentauthz")
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	grpcPort, httpPort := freePort(t), freePort(t)
	p := runContainer(t, c, only[*corev1.ConfigMap](t, objs, 1)[0].Data, map[string]string{
		fmt.Sprintf("--grpc-addr=0.0.0.0:%d", ports["grpc"]): "--grpc-addr=127.0.0.1:" + grpcPort,
		fmt.Sprintf("--http-addr=0.0.0.0:%d", ports["http"]): "--http-addr=127.0.0.1:" + httpPort,
	})
	p.waitFor(t, "gRPC health SERVING", func() bool { return grpcServing("127.0.0.1:" + grpcPort) })
	for what, probe := range map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		g := probe.HTTPGet
		if g.Port.String() != "http" || g.Scheme != corev1.URISchemeHTTP {
			t.Fatalf("%s probe on %s %s: the test serves the http port in plaintext", what, g.Scheme, g.Port.String())
		}
		url := "http://127.0.0.1:" + httpPort + g.Path
		if got := httpStatus(url); got != http.StatusOK {
			t.Errorf("%s probe GET %s = %d, want 200", what, g.Path, got)
		}
	}
	// And a path agentauthz does not serve is not 200: the probes are not passing by accident.
	if got := httpStatus("http://127.0.0.1:" + httpPort + "/no-such-probe"); got == http.StatusOK {
		t.Errorf("GET /no-such-probe = %d", got)
	}
}

// TestChartSidecarSocket runs the agentauthz container of the sidecar pattern as a process with
// the args the chart renders: it creates its socket with mode 0660 in the group given (here
// this process's, since the test cannot be the container's user), and answers gRPC health on it.
func TestChartSidecarSocket(t *testing.T) {
	objs := mustRender(t, values(t, "", map[string]any{
		"mode": "sidecar", "sidecar": map[string]any{"app": map[string]any{"image": "registry.example/api:1"}},
	}))
	dep := only[*appsv1.Deployment](t, objs, 1)[0]
	c := container(t, dep.Spec.Template.Spec, "agentauthz")
	var policy map[string]string
	for _, cm := range only[*corev1.ConfigMap](t, objs, 2) {
		if _, ok := cm.Data["envoy.yaml"]; !ok {
			policy = cm.Data
		}
	}
	group, _ := flag(c.Args, "grpc-socket-group")
	sockDir := stack.ShortTempDir(t)
	sock := filepath.Join(sockDir, "agentauthz.sock")
	gid := strconv.Itoa(os.Getegid())
	p := runContainer(t, c, policy, map[string]string{
		"--grpc-addr=unix:/run/agentauthz/agentauthz.sock": "--grpc-addr=unix:" + sock,
		"--grpc-socket-group=" + group:                     "--grpc-socket-group=" + gid,
		"--http-addr=127.0.0.1:9002":                       "--http-addr=127.0.0.1:" + freePort(t),
	})
	p.waitFor(t, "gRPC health SERVING on the socket", func() bool { return grpcServing("unix:" + sock) })
	st, err := os.Lstat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Type() != fs.ModeSocket || st.Mode().Perm() != 0o660 || strconv.Itoa(int(st.Sys().(*syscall.Stat_t).Gid)) != gid {
		t.Errorf("socket %v, group %d; want a socket, 0660, group %s", st.Mode(), st.Sys().(*syscall.Stat_t).Gid, gid)
	}
}

// TestChartFlagsExist: every flag the chart passes, in every mode, is one `agentauthz serve`
// has (for the modes the tests above cannot run, such as SPIFFE mTLS without SPIRE).
func TestChartFlagsExist(t *testing.T) {
	out, err := exec.Command(agentauthz(t), "serve", "-h").CombinedOutput()
	if err != nil {
		t.Fatalf("serve -h: %v\n%s", err, out)
	}
	known := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z0-9-]+)`).FindAllStringSubmatch(string(out), -1) {
		known[m[1]] = true
	}
	if !known["grpc-socket-mode"] || !known["spiffe-socket"] {
		t.Fatalf("serve -h lists %v", known)
	}
	for name, v := range map[string]string{
		"front proxy, SPIFFE": values(t, "", merge(shared, map[string]any{
			"frontProxy": map[string]any{"allowedClients": []any{"spiffe://acme.internal/envoy"}},
			"approvals":  map[string]any{"approversSecret": "approvers"},
			"extraArgs":  []any{"--redact-query=token"},
		})),
		"istio":         values(t, "istio/values-istio.yaml", shared),
		"envoy gateway": values(t, "envoy-gateway/values-envoy-gateway.yaml", shared),
		"sidecar":       values(t, "", map[string]any{"mode": "sidecar", "sidecar": map[string]any{"app": map[string]any{"image": "x/y:1"}}}),
	} {
		dep := only[*appsv1.Deployment](t, mustRender(t, v), 1)[0]
		c := container(t, dep.Spec.Template.Spec, "agentauthz")
		if c.Args[0] != "serve" {
			t.Errorf("%s: args %v", name, c.Args)
		}
		for _, a := range c.Args[1:] {
			f, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
			if !strings.HasPrefix(a, "--") || !known[f] {
				t.Errorf("%s: %q is not a flag of agentauthz serve", name, a)
			}
		}
	}
}
