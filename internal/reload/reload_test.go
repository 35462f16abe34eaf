package reload_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/demo"
	"github.com/agentauthz/agentauthz/internal/metrics"
	"github.com/agentauthz/agentauthz/internal/reload"
	"github.com/agentauthz/agentauthz/internal/server"
	"github.com/agentauthz/agentauthz/internal/servertest"
	"github.com/agentauthz/agentauthz/policy"
)

const (
	helpdesk = "spiffe://acme.internal/agent/helpdesk"
	// readScope is the line of acme.yaml that grants the helpdesk agent tickets:read.
	readScope = "      - tickets:read\n"
	// deadline bounds every wait for a reload; reloads take milliseconds.
	deadline = 15 * time.Second
)

// copyDemo copies every file of the demo policy into a new directory and returns it.
func copyDemo(t *testing.T) string {
	t.Helper()
	t.Setenv("AGENTAUTHZ_HELPDESK_TOKEN", "reload-test-token")
	sub, err := fs.Sub(demo.Files, demo.Dir)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "policy")
	if err := os.CopyFS(dir, sub); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "acme.yaml")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// loadFiles is what `agentauthz serve --policy` reloads with.
func loadFiles(path string) (*policy.Snapshot, error) {
	files, err := policy.ReadPath(path)
	if err != nil {
		return nil, err
	}
	return policy.Load(files, policy.Options{})
}

// counting wraps loadFiles, counting the loads it starts.
func counting(n *atomic.Int64) func(string) (*policy.Snapshot, error) {
	return func(p string) (*policy.Snapshot, error) {
		n.Add(1)
		return loadFiles(p)
	}
}

func mustLoad(t *testing.T, path string) *policy.Store {
	t.Helper()
	snap, err := loadFiles(path)
	if err != nil {
		t.Fatalf("loading %s: %v", path, err)
	}
	store := &policy.Store{}
	store.Swap(snap)
	return store
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// withoutReadScope is acme.yaml with tickets:read taken from the helpdesk agent.
func withoutReadScope(t *testing.T, good string) string {
	t.Helper()
	if n := strings.Count(good, readScope); n != 1 {
		t.Fatalf("acme.yaml grants tickets:read %d times, want once", n)
	}
	return strings.Replace(good, readScope, "", 1)
}

// replace writes data to a temporary file beside p and renames it over p, as editors save.
func replace(t *testing.T, p, data string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(p), "."+filepath.Base(p)+".swp")
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a log destination safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// watch runs r.Watch until the test ends, then checks that it returned cleanly.
func watch(t *testing.T, r *reload.Reloader, hup <-chan os.Signal) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Watch(ctx, hup) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Watch: %v", err)
			}
		case <-time.After(deadline):
			t.Errorf("Watch did not return after its context ended")
		}
	})
}

// poll calls cond until it holds, failing the test after deadline. It returns how long it took.
func poll(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > deadline {
			t.Fatalf("%s: not within %v", what, deadline)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// waitWatching proves the watcher is watching dir: it touches a file there that is not policy
// until a reload starts. Edits made before the watcher is set up would go unseen.
func waitWatching(t *testing.T, dir string, loads *atomic.Int64) {
	t.Helper()
	before := loads.Load()
	probe := filepath.Join(dir, "watch-probe.txt")
	start := time.Now()
	for i := 0; loads.Load() == before; i++ {
		if time.Since(start) > deadline {
			t.Fatalf("the watcher did not reload after %d changes in %s", i, dir)
		}
		if i%10 == 0 {
			if err := os.WriteFile(probe, []byte(fmt.Sprint(i)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func getTicket() *authv3.CheckRequest {
	return extauthz.HTTPRequest{Principal: helpdesk, Host: "helpdesk.acme.internal", Path: "/v1/tickets/4711"}.CheckRequest()
}

// verdict classifies an answer to getTicket: the old policy allows it, the new one denies it
// with scope_missing. Anything else is a failure, described.
func verdict(resp *authv3.CheckResponse) (allowed, denied bool, failure string) {
	a, err := servertest.Read(resp)
	switch {
	case err != nil:
		return false, false, err.Error()
	case a.Allow && a.Code == "allowed" && a.Rule == "get-ticket":
		return true, false, ""
	case a.Status == 403 && a.GRPCCode == codes.PermissionDenied && a.Code == "scope_missing" && a.Rule == "get-ticket":
		return false, true, ""
	}
	return false, false, fmt.Sprintf("unexpected answer: grpc status %s, http %d, code %q, rule %q", a.GRPCCode, a.Status, a.Code, a.Rule)
}

// load is callers checking getTicket in a loop, counting answers and failures.
type load struct {
	allows, denies atomic.Int64
	mu             sync.Mutex
	failures       []string
	stop           chan struct{}
	wg             sync.WaitGroup
}

func (l *load) fail(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.failures) < 50 {
		l.failures = append(l.failures, fmt.Sprintf(format, args...))
	}
}

func startLoad(client authv3.AuthorizationClient, workers int) *load {
	l := &load{stop: make(chan struct{})}
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			sawDeny := false
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				resp, err := client.Check(ctx, getTicket())
				cancel()
				if err != nil {
					l.fail("worker %d: Check: %v", w, err)
					continue
				}
				allowed, denied, failure := verdict(resp)
				switch {
				case failure != "":
					l.fail("worker %d: %s", w, failure)
				case allowed && sawDeny:
					// Swaps are atomic: once a caller saw the new policy, it never sees the old.
					l.fail("worker %d: allowed by the old policy after the new one denied", w)
				case allowed:
					l.allows.Add(1)
				case denied:
					sawDeny = true
					l.denies.Add(1)
				}
			}
		}()
	}
	return l
}

func (l *load) calls() int64 { return l.allows.Load() + l.denies.Load() }

func httpGet(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

type readyz struct {
	Status         string `json:"status"`
	PolicyRevision string `json:"policy_revision"`
	LastLoad       *struct {
		OK       *bool    `json:"ok"`
		At       string   `json:"at"`
		Problems []string `json:"problems"`
	} `json:"last_load"`
}

func getReadyz(t *testing.T, base string) (int, readyz) {
	t.Helper()
	code, body := httpGet(t, base+"/readyz")
	var r readyz
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("/readyz: %v\n%s", err, body)
	}
	return code, r
}

// scrape reads /metrics: each sample of the named family by its labels, written "k=v,...".
func scrape(t *testing.T, base, family string) map[string]float64 {
	t.Helper()
	code, body := httpGet(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	out := map[string]float64{}
	for _, m := range mfs[family].GetMetric() {
		var labels []string
		for _, lp := range m.GetLabel() {
			labels = append(labels, lp.GetName()+"="+lp.GetValue())
		}
		out[strings.Join(labels, ",")] = value(m)
	}
	return out
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	}
	return -1
}

func mentions(problems []string, parts ...string) bool {
	for _, p := range problems {
		all := true
		for _, part := range parts {
			all = all && strings.Contains(p, part)
		}
		if all {
			return true
		}
	}
	return false
}

// TestReloadUnderLoad edits the policy on disk while callers check a request in a loop: every
// call is answered by the old policy or the new one, never anything else; a broken edit keeps
// the last good policy serving and says why, in the Store, /readyz and /metrics; fixing the
// file clears the failure.
func TestReloadUnderLoad(t *testing.T) {
	dir := copyDemo(t)
	acme := filepath.Join(dir, "acme.yaml")
	good := readFile(t, acme)
	newer := withoutReadScope(t, good)

	store := mustLoad(t, dir)
	oldRev := store.Load().Revision()
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	m.Reload(true, oldRev)
	srv := servertest.Start(t, server.Config{
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Store: store, Metrics: m, Gatherer: reg,
		// The race detector on a small machine compiling policies beside eight callers: a
		// deadline_exceeded here would be CPU starvation, not what this test is about.
		CheckTimeout: 10 * time.Second,
	})
	base := "http://" + srv.HTTPAddr().String()

	var loads atomic.Int64
	logs := &syncBuffer{}
	r := &reload.Reloader{
		Path: dir, Load: counting(&loads), Store: store, Metrics: m, Debounce: 50 * time.Millisecond,
		Log: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	watch(t, r, nil)
	waitWatching(t, dir, &loads)

	client := servertest.Client(t, srv)
	l := startLoad(client, 8)
	stopped := false
	stopLoad := func() {
		if !stopped {
			stopped = true
			close(l.stop)
			l.wg.Wait()
		}
	}
	t.Cleanup(stopLoad)
	poll(t, "callers under way", func() bool { return l.allows.Load() >= 200 })

	// The edit: the helpdesk agent loses tickets:read.
	edited := time.Now()
	replace(t, acme, newer)
	var took time.Duration
	poll(t, "a check denied by the edited policy", func() bool {
		resp, err := client.Check(context.Background(), getTicket())
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		_, denied, failure := verdict(resp)
		if failure != "" {
			t.Fatalf("while waiting for the reload: %s", failure)
		}
		took = time.Since(edited)
		return denied
	})
	t.Logf("the edit was in force %v after the rename, under %d calls so far", took.Round(time.Millisecond), l.calls())
	newRev := store.Load().Revision()
	if newRev == oldRev {
		t.Fatalf("the revision did not change: %s", newRev)
	}
	if f := store.LastFailure(); f != nil {
		t.Fatalf("LastFailure after a good edit = %+v", f)
	}
	poll(t, "every caller seeing the edit", func() bool { return l.denies.Load() >= 200 })
	if info := scrape(t, base, "agentauthz_policy_info"); len(info) != 1 || info["revision="+newRev] != 1 {
		t.Errorf("agentauthz_policy_info = %v, want only revision %s", info, newRev)
	}

	// A broken edit, then another: the last good policy keeps deciding, and says why.
	brokenYAML := strings.Replace(newer, "trust_domains:\n  - acme.internal\n", "trust_domains: [acme.internal\n", 1)
	if brokenYAML == newer {
		t.Fatal("acme.yaml no longer starts with the trust domain list this test breaks")
	}
	badMethod := strings.Replace(newer, "        method: GET\n", "        method: get\n", 1)
	if badMethod == newer {
		t.Fatal("acme.yaml has no route with method GET to break")
	}
	for _, broken := range []struct {
		name, data string
		says       []string
	}{
		{"invalid YAML", brokenYAML, []string{"acme.yaml:"}},
		{"a schema violation", badMethod, []string{"acme.yaml:", "method"}},
	} {
		before := store.LastFailure()
		replace(t, acme, broken.data)
		poll(t, broken.name+" recorded as a failure", func() bool {
			f := store.LastFailure()
			return f != nil && f != before && mentions(f.Problems, broken.says...)
		})
		f := store.LastFailure()
		t.Logf("%s: %q", broken.name, f.Problems)
		if got := store.Load().Revision(); got != newRev {
			t.Errorf("%s: revision %s in force, want the last good %s", broken.name, got, newRev)
		}
		resp, err := client.Check(context.Background(), getTicket())
		if err != nil {
			t.Fatal(err)
		}
		if _, denied, failure := verdict(resp); !denied {
			t.Errorf("%s: the last good policy does not decide: %s", broken.name, failure)
		}
		code, rz := getReadyz(t, base)
		switch {
		case code != http.StatusOK || rz.Status != "ready" || rz.PolicyRevision != newRev:
			t.Errorf("%s: /readyz = %d %+v, want 200 ready with revision %s", broken.name, code, rz, newRev)
		case rz.LastLoad == nil || rz.LastLoad.OK == nil || *rz.LastLoad.OK || rz.LastLoad.At == "":
			t.Errorf("%s: /readyz last_load = %+v, want ok false with a time", broken.name, rz.LastLoad)
		case !mentions(rz.LastLoad.Problems, broken.says...):
			t.Errorf("%s: /readyz problems %q do not say %q", broken.name, rz.LastLoad.Problems, broken.says)
		}
		reloads := scrape(t, base, "agentauthz_policy_reloads_total")
		if reloads["result=failure"] < 1 {
			t.Errorf("%s: agentauthz_policy_reloads_total = %v, want failures counted", broken.name, reloads)
		}
		if ok := scrape(t, base, "agentauthz_policy_last_load_success"); ok[""] != 0 {
			t.Errorf("%s: agentauthz_policy_last_load_success = %v, want 0", broken.name, ok)
		}
		if info := scrape(t, base, "agentauthz_policy_info"); len(info) != 1 || info["revision="+newRev] != 1 {
			t.Errorf("%s: agentauthz_policy_info = %v, want the revision still serving", broken.name, info)
		}
	}
	if reloads := scrape(t, base, "agentauthz_policy_reloads_total"); reloads["result=failure"] < 2 || reloads["result=success"] < 2 {
		t.Errorf("agentauthz_policy_reloads_total = %v, want both failures and the successes counted", reloads)
	}

	// Fixed: the failure clears.
	replace(t, acme, newer)
	poll(t, "the fixed file clearing the failure", func() bool { return store.LastFailure() == nil })
	if code, rz := getReadyz(t, base); code != http.StatusOK || rz.LastLoad != nil || rz.PolicyRevision != newRev {
		t.Errorf("/readyz after the fix = %d %+v, want ready, revision %s, no last_load", code, rz, newRev)
	}
	if ok := scrape(t, base, "agentauthz_policy_last_load_success"); ok[""] != 1 {
		t.Errorf("agentauthz_policy_last_load_success after the fix = %v, want 1", ok)
	}

	stopLoad()
	t.Logf("%d checks answered by the old policy, %d by the new, %d loads", l.allows.Load(), l.denies.Load(), loads.Load())
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range l.failures {
		t.Errorf("failed call: %s", f)
	}
	if l.allows.Load() == 0 || l.denies.Load() == 0 {
		t.Errorf("the load saw %d allows and %d denies; it must span the edit", l.allows.Load(), l.denies.Load())
	}
	out := logs.String()
	for _, want := range []string{`"msg":"policy reload failed; the previous policy keeps serving"`, `"serving_revision":"` + newRev + `"`, `"msg":"policy loaded"`, `"revision":"` + newRev + `"`} {
		if !strings.Contains(out, want) {
			t.Errorf("the reload log lacks %s:\n%s", want, out)
		}
	}
}

func decide(t *testing.T, store *policy.Store) (allowed, denied bool) {
	t.Helper()
	resp, err := extauthz.NewForStore(store).Check(context.Background(), getTicket())
	if err != nil {
		t.Fatal(err)
	}
	// As Envoy receives it: the dynamic metadata is carried in wire form.
	b, err := proto.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	resp = &authv3.CheckResponse{}
	if err := proto.Unmarshal(b, resp); err != nil {
		t.Fatal(err)
	}
	allowed, denied, failure := verdict(resp)
	if failure != "" {
		t.Fatal(failure)
	}
	return allowed, denied
}

// TestReloadSignal: Reload, as SIGHUP calls it, picks up a change without any watcher; a
// failure is returned and recorded and leaves the policy in force.
func TestReloadSignal(t *testing.T) {
	dir := copyDemo(t)
	acme := filepath.Join(dir, "acme.yaml")
	good := readFile(t, acme)
	store := mustLoad(t, dir)
	oldRev := store.Load().Revision()
	r := &reload.Reloader{Path: dir, Load: loadFiles, Store: store} // no Metrics, no Log: both optional

	if err := r.Reload("signal"); err != nil {
		t.Fatalf("Reload of an unchanged policy: %v", err)
	}
	if store.Load().Revision() != oldRev {
		t.Error("reloading unchanged files changed the revision")
	}

	if err := os.WriteFile(acme, []byte(withoutReadScope(t, good)), 0o644); err != nil {
		t.Fatal(err)
	}
	if allowed, _ := decide(t, store); !allowed {
		t.Fatal("the change was in force before any reload")
	}
	if err := r.Reload("signal"); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	newRev := store.Load().Revision()
	if newRev == oldRev {
		t.Error("Reload did not change the revision")
	}
	if _, denied := decide(t, store); !denied {
		t.Error("the reloaded policy still allows the helpdesk agent to read tickets")
	}

	if err := os.WriteFile(acme, []byte("agents: [\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := r.Reload("signal")
	var problems policy.Problems
	if !errors.As(err, &problems) || len(problems) == 0 {
		t.Fatalf("Reload of a broken policy = %v, want its problems", err)
	}
	if f := store.LastFailure(); f == nil || !mentions(f.Problems, "acme.yaml") || f.At.IsZero() {
		t.Errorf("LastFailure = %+v, want the problems of acme.yaml", f)
	}
	if store.Load().Revision() != newRev {
		t.Error("a failed reload replaced the policy")
	}

	// A missing policy directory is a failure too, recorded the same way.
	r2 := &reload.Reloader{Path: filepath.Join(dir, "nowhere"), Load: loadFiles, Store: store}
	if err := r2.Reload("signal"); err == nil {
		t.Error("Reload of a missing path succeeded")
	}
	if f := store.LastFailure(); f == nil || !mentions(f.Problems, "nowhere") {
		t.Errorf("LastFailure = %+v, want the missing path", f)
	}
	if store.Load().Revision() != newRev {
		t.Error("a failed reload replaced the policy")
	}
}

// TestWatchSignal: Watch reloads when its signal channel delivers, whatever the debounce.
func TestWatchSignal(t *testing.T) {
	dir := copyDemo(t)
	acme := filepath.Join(dir, "acme.yaml")
	store := mustLoad(t, dir)
	oldRev := store.Load().Revision()
	var loads atomic.Int64
	// A debounce longer than the test: only the signal can reload.
	r := &reload.Reloader{Path: dir, Load: counting(&loads), Store: store, Debounce: time.Hour}
	hup := make(chan os.Signal, 1)
	watch(t, r, hup)

	if err := os.WriteFile(acme, []byte(withoutReadScope(t, readFile(t, acme))), 0o644); err != nil {
		t.Fatal(err)
	}
	hup <- os.Interrupt // any signal value: Watch does not look at it
	poll(t, "the signalled reload", func() bool { return store.Load().Revision() != oldRev })
	if _, denied := decide(t, store); !denied {
		t.Error("the signalled reload did not put the change in force")
	}
	if n := loads.Load(); n != 1 {
		t.Errorf("%d loads, want exactly the signalled one", n)
	}
}

// TestWatchSingleFile: with a policy file, not a directory, as the path, the watcher still
// sees the file replaced by rename (the file's inode changes) and rewritten in place.
func TestWatchSingleFile(t *testing.T) {
	dir := copyDemo(t)
	acme := filepath.Join(dir, "acme.yaml")
	good := readFile(t, acme)
	store := mustLoad(t, acme)
	oldRev := store.Load().Revision()
	var loads atomic.Int64
	r := &reload.Reloader{Path: acme, Load: counting(&loads), Store: store, Debounce: 50 * time.Millisecond}
	watch(t, r, nil)
	waitWatching(t, dir, &loads)

	replace(t, acme, withoutReadScope(t, good))
	took := poll(t, "the renamed file reloaded", func() bool {
		_, denied := decide(t, store)
		return denied
	})
	t.Logf("replaced by rename: in force after %v", took.Round(time.Millisecond))
	newRev := store.Load().Revision()
	if newRev == oldRev {
		t.Error("the revision did not change")
	}

	// Renamed over again: the watch survives the first rename.
	replace(t, acme, good)
	poll(t, "the file renamed back reloaded", func() bool {
		allowed, _ := decide(t, store)
		return allowed
	})
	if store.Load().Revision() != oldRev {
		t.Errorf("revision %s after restoring the file, want the original %s", store.Load().Revision(), oldRev)
	}

	// Rewritten in place.
	if err := os.WriteFile(acme, []byte(withoutReadScope(t, good)), 0o644); err != nil {
		t.Fatal(err)
	}
	poll(t, "the file rewritten in place reloaded", func() bool {
		_, denied := decide(t, store)
		return denied && store.LastFailure() == nil
	})
	if store.Load().Revision() != newRev {
		t.Errorf("revision %s, want %s: the same content", store.Load().Revision(), newRev)
	}
}
