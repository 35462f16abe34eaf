package envoyproc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Validate runs `envoy --mode validate -c configPath`, which loads the configuration as Envoy
// would start it (every extension, certificate files and file access logs opened) without
// binding ports or connecting anywhere. It fails the test with Envoy's output if Envoy refuses
// the configuration, and otherwise returns the output (warnings, such as deprecated fields,
// included).
func Validate(t testing.TB, configPath string) string {
	t.Helper()
	out, err := TryValidate(t, configPath)
	if err != nil {
		t.Fatalf("envoy --mode validate -c %s: %v\n%s", configPath, err, out)
	}
	return out
}

// TryValidate is Validate for configurations that may be refused: it returns Envoy's output and
// an error if Envoy refused the configuration.
func TryValidate(t testing.TB, configPath string) (string, error) {
	t.Helper()
	bin := Binary(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--mode", "validate", "-c", configPath, "--log-level", "warn")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Options says how to start Envoy.
type Options struct {
	// Config is the bootstrap file, usually written by RenderFile. Its admin address is
	// replaced by a free loopback port; listeners keep the addresses it gives (port 0 for a free
	// one; ListenerAddr tells which).
	Config string
	// Concurrency is the number of worker threads; 1 when zero.
	Concurrency int
	// LogLevel is Envoy's log level, "info" when empty; ComponentLogLevel adds per-component
	// levels, such as "ext_authz:debug,http:debug".
	LogLevel, ComponentLogLevel string
	// Args are further arguments for Envoy.
	Args []string
	// ReadyTimeout bounds the wait for Envoy to serve; 60s when zero.
	ReadyTimeout time.Duration
}

// Envoy is a running Envoy process, stopped when its test ends.
type Envoy struct {
	t       testing.TB
	dir     string
	cmd     *exec.Cmd
	admin   string
	client  *http.Client
	done    chan struct{}
	waitErr error
}

// Start starts Envoy and returns once its admin interface answers /ready with LIVE and its
// workers have started with every listener bound. Envoy runs with its own admin port, hot
// restart disabled (no shared memory or hot-restart socket that a second Envoy, such as a test
// in another package running at the same time, could collide with or a killed one leave
// behind), Options.Concurrency workers, and its log and standard output in files of a
// temporary directory (Logs, Stdout). When the test ends it gets SIGTERM and, after 10 seconds,
// SIGKILL; on Linux it is also killed if the test binary dies first. If the test failed, the end
// of Envoy's log is written to the test log.
func Start(t testing.TB, opts Options) *Envoy {
	t.Helper()
	bin := Binary(t)
	if opts.Config == "" {
		t.Fatal("envoyproc: Options.Config is empty")
	}
	if opts.Concurrency == 0 {
		opts.Concurrency = 1
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "info"
	}
	if opts.ReadyTimeout == 0 {
		opts.ReadyTimeout = 60 * time.Second
	}
	e := &Envoy{
		t:      t,
		dir:    t.TempDir(),
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}},
		done:   make(chan struct{}),
	}
	args := []string{
		"-c", opts.Config,
		// Merged into the bootstrap over whatever admin address the file has.
		"--config-yaml", `admin: {address: {socket_address: {address: 127.0.0.1, port_value: 0}}}`,
		"--admin-address-path", e.path("admin-address"),
		"--disable-hot-restart",
		"--concurrency", strconv.Itoa(opts.Concurrency),
		"--log-level", opts.LogLevel,
		// File access logs (and /dev/stdout, the shipped configurations' access log) are
		// flushed every 50ms rather than every second, so that tests can read them soon.
		"--file-flush-interval-msec", "50",
	}
	if opts.ComponentLogLevel != "" {
		args = append(args, "--component-log-level", opts.ComponentLogLevel)
	}
	args = append(args, opts.Args...)

	stdout := e.create("stdout.log")
	// Envoy's own log goes to standard error, which writes every line at once (a --log-path
	// file is flushed only now and then).
	stderr := e.create("envoy.log")
	e.cmd = exec.Command(bin, args...)
	e.cmd.Stdout, e.cmd.Stderr = stdout, stderr
	e.cmd.SysProcAttr = sysProcAttr()
	if err := e.cmd.Start(); err != nil {
		stdout.Close()
		stderr.Close()
		t.Fatalf("envoyproc: start %s: %v", bin, err)
	}
	stdout.Close()
	stderr.Close()
	go func() {
		e.waitErr = e.cmd.Wait()
		close(e.done)
	}()
	t.Cleanup(e.stop)

	if err := e.waitReady(opts.ReadyTimeout); err != nil {
		t.Fatalf("envoyproc: Envoy did not become ready: %v\n%s", err, e.tail(60))
	}
	return e
}

func (e *Envoy) path(name string) string { return filepath.Join(e.dir, name) }

func (e *Envoy) create(name string) *os.File {
	// Appending: the shipped configurations' access log is /dev/stdout, which Envoy opens anew
	// by path, so this file has two writers.
	f, err := os.OpenFile(e.path(name), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		e.t.Fatalf("envoyproc: %v", err)
	}
	return f
}

// exited reports whether Envoy has exited, and how.
func (e *Envoy) exited() (bool, error) {
	select {
	case <-e.done:
		return true, e.waitErr
	default:
		return false, nil
	}
}

// waitReady waits until Envoy serves: admin /ready says LIVE (initialisation, clusters and
// listeners included, is over), and listener_manager.workers_started is 1, which Envoy sets
// once every worker has added every listener.
func (e *Envoy) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if done, err := e.exited(); done {
			return fmt.Errorf("Envoy exited: %v", err)
		}
		last = e.ready()
		if last == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %v: %v", timeout, last)
}

func (e *Envoy) ready() error {
	if e.admin == "" {
		b, err := os.ReadFile(e.path("admin-address"))
		if err != nil || len(strings.TrimSpace(string(b))) == 0 {
			return errors.New("no admin address yet")
		}
		e.admin = strings.TrimSpace(string(b))
	}
	status, body, err := e.get("/ready")
	if err != nil {
		return err
	}
	if status != http.StatusOK || strings.TrimSpace(body) != "LIVE" {
		return fmt.Errorf("/ready: %d %s", status, strings.TrimSpace(body))
	}
	stats, err := e.stats()
	if err != nil {
		return err
	}
	if stats["listener_manager.workers_started"] != 1 {
		return errors.New("workers not started")
	}
	if n := stats["listener_manager.total_listeners_warming"]; n != 0 {
		return fmt.Errorf("%d listeners warming", n)
	}
	return nil
}

func (e *Envoy) get(path string) (int, string, error) {
	resp, err := e.client.Get("http://" + e.admin + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// stop ends Envoy: SIGTERM, then SIGKILL if it has not exited within 10 seconds.
func (e *Envoy) stop() {
	if done, _ := e.exited(); !done {
		signalGroup(e.cmd.Process, syscall.SIGTERM)
		select {
		case <-e.done:
		case <-time.After(10 * time.Second):
			e.t.Errorf("envoyproc: Envoy did not exit within 10s of SIGTERM; killing it")
			signalGroup(e.cmd.Process, syscall.SIGKILL)
			<-e.done
		}
	}
	if e.t.Failed() {
		e.t.Logf("envoyproc: Envoy's log (%s), last lines:\n%s", e.dir, e.tail(80))
	}
}

// tail returns the last n lines of Envoy's log.
func (e *Envoy) tail(n int) string {
	data, _ := os.ReadFile(e.path("envoy.log"))
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// AdminAddr is the host:port of Envoy's admin interface.
func (e *Envoy) AdminAddr() string { return e.admin }

// Admin GETs path from the admin interface and returns the body; a status other than 200 fails
// the test.
func (e *Envoy) Admin(path string) string {
	e.t.Helper()
	status, body, err := e.get(path)
	if err != nil {
		e.t.Fatalf("envoyproc: admin %s: %v", path, err)
	}
	if status != http.StatusOK {
		e.t.Fatalf("envoyproc: admin %s: status %d: %s", path, status, body)
	}
	return body
}

// ListenerAddr is the address the named listener is bound to, as host:port (the port Envoy
// chose for port 0) or, for a pipe, its path.
func (e *Envoy) ListenerAddr(name string) string {
	e.t.Helper()
	var ls struct {
		ListenerStatuses []struct {
			Name         string       `json:"name"`
			LocalAddress adminAddress `json:"local_address"`
		} `json:"listener_statuses"`
	}
	if err := json.Unmarshal([]byte(e.Admin("/listeners?format=json")), &ls); err != nil {
		e.t.Fatalf("envoyproc: /listeners: %v", err)
	}
	var names []string
	for _, l := range ls.ListenerStatuses {
		if l.Name == name {
			return l.LocalAddress.String()
		}
		names = append(names, l.Name)
	}
	e.t.Fatalf("envoyproc: no listener %q (listeners: %s)", name, strings.Join(names, ", "))
	return ""
}

type adminAddress struct {
	SocketAddress *struct {
		Address   string `json:"address"`
		PortValue int    `json:"port_value"`
	} `json:"socket_address"`
	Pipe *struct {
		Path string `json:"path"`
	} `json:"pipe"`
}

func (a adminAddress) String() string {
	switch {
	case a.SocketAddress != nil:
		return fmt.Sprintf("%s:%d", a.SocketAddress.Address, a.SocketAddress.PortValue)
	case a.Pipe != nil:
		return a.Pipe.Path
	}
	return ""
}

// Stats returns Envoy's counters and gauges by name, from /stats?format=json (histograms and
// text readouts are left out).
func (e *Envoy) Stats() map[string]uint64 {
	e.t.Helper()
	s, err := e.stats()
	if err != nil {
		e.t.Fatalf("envoyproc: %v", err)
	}
	return s
}

func (e *Envoy) stats() (map[string]uint64, error) {
	status, body, err := e.get("/stats?format=json")
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("/stats: status %d", status)
	}
	return parseStats([]byte(body))
}

// parseStats reads /stats?format=json: {"stats": [{"name": ..., "value": ...}, ...,
// {"histograms": ...}]}, where a text readout's value is a string.
func parseStats(body []byte) (map[string]uint64, error) {
	var doc struct {
		Stats []struct {
			Name  *string          `json:"name"`
			Value *json.RawMessage `json:"value"`
		} `json:"stats"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("/stats?format=json: %w", err)
	}
	out := make(map[string]uint64, len(doc.Stats))
	for _, s := range doc.Stats {
		if s.Name == nil || s.Value == nil {
			continue // the histograms entry
		}
		if strings.HasPrefix(string(*s.Value), `"`) {
			continue // a text readout, such as an SDS control plane's identifier
		}
		v, err := strconv.ParseUint(string(*s.Value), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("/stats?format=json: %s: value %s: %w", *s.Name, *s.Value, err)
		}
		out[*s.Name] = v
	}
	return out, nil
}

// Logs returns Envoy's own log so far (its standard error).
func (e *Envoy) Logs() string { return e.read("envoy.log") }

// Stdout returns what Envoy wrote to standard output so far: the access log, in the shipped
// configurations (path /dev/stdout). Envoy flushes it every 50ms.
func (e *Envoy) Stdout() string { return e.read("stdout.log") }

func (e *Envoy) read(name string) string {
	b, err := os.ReadFile(e.path(name))
	if err != nil {
		e.t.Errorf("envoyproc: %v", err)
	}
	return string(b)
}

// PID is Envoy's process id.
func (e *Envoy) PID() int { return e.cmd.Process.Pid }

// Stop stops Envoy now, as the test's end would: SIGTERM, then SIGKILL.
func (e *Envoy) Stop() { e.stop() }

// Exited reports whether Envoy has exited, and with what error.
func (e *Envoy) Exited() (bool, error) { return e.exited() }
