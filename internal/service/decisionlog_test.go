package service_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentauthz/agentauthz/extauthz"
	"github.com/agentauthz/agentauthz/internal/audit"
	"github.com/agentauthz/agentauthz/internal/servertest"
	"github.com/agentauthz/agentauthz/internal/service"
	"github.com/agentauthz/agentauthz/policy"
)

// copyDir copies the regular files directly inside src into a new directory dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// get fetches url with an optional bearer token and returns the status and body.
func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if token != "" {
		req.Header.Set("authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric reads one sample of the metrics page: name with its labels, as written.
func metric(page, series string) (float64, bool) {
	for line := range strings.Lines(page) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// logLines returns the server log's records with the given message.
func logLines(t *testing.T, log, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("server log line %q: %v", sc.Text(), err)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// serve runs `serve` as the service does, with a keyed, rotated decision log, an approver, and
// the policy reached through a symbolic link; stop ends it and returns the server log.
type served struct {
	svc                  *service.Service
	base                 string
	logPath, keyPath     string
	policyDir, policyVia string
	serverLog            *syncBuffer
	done                 chan error
	stop                 func()
}

const auditorToken = "decision-log-test-auditor-token"

func startServed(t *testing.T) *served {
	t.Helper()
	t.Setenv("AGENTAUTHZ_HELPDESK_TOKEN", "service-test-credential")
	root := t.TempDir()
	s := &served{serverLog: &syncBuffer{}, done: make(chan error, 1)}
	s.policyDir = filepath.Join(root, "releases", "r1")
	copyDir(t, "../demo/policy", s.policyDir)
	s.policyVia = filepath.Join(root, "current")
	if err := os.Symlink(filepath.Join("releases", "r1"), s.policyVia); err != nil {
		t.Skipf("symbolic links: %v", err)
	}
	for _, d := range []string{"log", "keys"} {
		os.Mkdir(filepath.Join(root, d), 0o700)
	}
	s.logPath = filepath.Join(root, "log", "decisions.log")
	s.keyPath = filepath.Join(root, "keys", "decision-log.key")
	if err := os.WriteFile(s.keyPath, []byte("service-test-decision-log-key-0123456789\n"), 0o400); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(auditorToken))
	approvers := filepath.Join(root, "approvers.yaml")
	os.WriteFile(approvers, []byte("approvers:\n  - name: audra\n    groups: [auditors]\n    token_sha256: "+hex.EncodeToString(sum[:])+"\n"), 0o600)
	svc, err := service.Start(service.Config{
		PolicyPath:  s.policyVia,
		GRPCAddr:    "127.0.0.1:0",
		HTTPAddr:    "127.0.0.1:0",
		DecisionLog: s.logPath,
		DecisionLogChain: service.DecisionLogConfig{
			KeyFile: s.keyPath, Rotate: audit.Rotation{Size: 3000}, HeadEvery: 10 * time.Millisecond,
		},
		RedactQuery: []string{"token"},
		Approvals:   service.ApprovalConfig{DataDir: filepath.Join(root, "data"), Approvers: approvers},
		Log:         slog.New(slog.NewJSONHandler(s.serverLog, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	s.svc = svc
	s.base = "http://" + svc.Server().HTTPAddr().String()
	ctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	go func() { s.done <- svc.Run(ctx, nil) }()
	t.Cleanup(func() {
		stop()
		<-s.done
	})
	return s
}

func (s *served) wait(t *testing.T) {
	t.Helper()
	s.stop()
	select {
	case err := <-s.done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		s.done <- nil // for the cleanup
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return")
	}
}

// The decision log's promise holds in serve: its head is exported out of the log writer's reach
// (the server log, periodically and at rotation and exit; a metric; an authenticated endpoint),
// the chain is keyed and rotated across files, and the rotated set verifies with the key against
// every head exported; a huge field is recorded, cut, and counted.
func TestDecisionLogChainExported(t *testing.T) {
	s := startServed(t)
	client := servertest.Client(t, s.svc.Server())
	const n = 30
	for i := range n {
		path := "/v1/tickets/" + strconv.Itoa(4700+i)
		if i == 7 {
			path = "/v1/tickets/" + strings.Repeat("x", 200<<10) + "?token=secret-7" // a direct caller's huge path
		}
		servertest.Check(t, client, extauthz.HTTPRequest{Principal: helpdesk, Host: "helpdesk.acme.internal", Path: path}.CheckRequest())
	}
	// The metric reaches the last record once the queue has written it.
	var page string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		_, page = get(t, s.base+"/metrics", "")
		if v, _ := metric(page, "agentauthz_decision_log_head_sequence"); v == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("agentauthz_decision_log_head_sequence never reached %d:\n%s", n, page)
		}
	}
	if v, ok := metric(page, "agentauthz_decision_log_truncated_total"); !ok || v != 1 {
		t.Errorf("agentauthz_decision_log_truncated_total = %v (%v), want 1", v, ok)
	}
	for _, r := range audit.Reasons {
		if v, ok := metric(page, `agentauthz_decision_log_failures_total{reason="`+r+`"}`); !ok || v != 0 {
			t.Errorf("failures{reason=%q} = %v (%v), want 0 and present", r, v, ok)
		}
	}

	// The endpoint: approvers and auditors only.
	if status, _ := get(t, s.base+"/v1/decision-log/head", ""); status != http.StatusUnauthorized {
		t.Errorf("head without a token: %d", status)
	}
	if status, _ := get(t, s.base+"/v1/decision-log/head", "wrong"); status != http.StatusUnauthorized {
		t.Errorf("head with a wrong token: %d", status)
	}
	status, body := get(t, s.base+"/v1/decision-log/head", auditorToken)
	var got struct {
		Head  string `json:"head"`
		Seq   uint64 `json:"seq"`
		Hash  string `json:"hash"`
		Keyed bool   `json:"keyed"`
		File  string `json:"file"`
	}
	if err := json.Unmarshal([]byte(body), &got); status != 200 || err != nil || got.Seq != n || !got.Keyed || got.File != s.logPath || got.Head != strconv.Itoa(n)+":"+got.Hash {
		t.Fatalf("head: %d %s (%v)", status, body, err)
	}
	endpointHead, _ := audit.ParseHead(got.Head)

	// The periodic server log line reaches the same head.
	periodic := func() bool {
		for _, h := range logLines(t, s.serverLog.String(), "decision log head") {
			if h["head"] == got.Head && h["keyed"] == true && h["seq"] == float64(n) {
				return true
			}
		}
		return false
	}
	for deadline := time.Now().Add(10 * time.Second); !periodic(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no periodic decision log head line with %s:\n%s", got.Head, s.serverLog.String())
		}
	}
	s.wait(t)

	serverLog := s.serverLog.String()
	closed := logLines(t, serverLog, "decision log closed: record its head")
	if len(closed) != 1 || closed[0]["head"] != got.Head {
		t.Errorf("closing head lines %v, want one with %s", closed, got.Head)
	}
	rotations := logLines(t, serverLog, "decision log rotated: record its head")
	var heads []audit.Head
	for _, r := range rotations {
		h, err := audit.ParseHead(r["head"].(string))
		if err != nil {
			t.Fatal(err)
		}
		heads = append(heads, h)
	}
	if len(heads) < 2 {
		t.Fatalf("%d rotations logged, want several", len(heads))
	}
	heads = append(heads, endpointHead)

	// The rotated set verifies with the key against every exported head; not without the key.
	files, _ := filepath.Glob(s.logPath + ".*")
	slices.Sort(files)
	files = append(files, s.logPath)
	key, err := audit.ReadKey(s.keyPath)
	if err != nil {
		t.Fatal(err)
	}
	v, _ := audit.NewVerifier(audit.VerifyOptions{Key: key, Heads: heads})
	total := 0
	var all []byte
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, data...)
		k, err := v.File(strings.NewReader(string(data)))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		total += k
	}
	if err := v.Finish(); err != nil || total != n || v.Head() != endpointHead {
		t.Errorf("verify %d files: %d records, head %s, %v; want %d, %s", len(files), total, v.Head(), err, n, endpointHead)
	}
	if strings.Contains(string(all), "secret-") || !strings.Contains(string(all), "…[truncated: 204829 bytes, sha256:") {
		t.Error("the huge path is not recorded cut, redacted before it was cut (the digest is of the redacted path)")
	}
	if _, _, err := audit.Verify(strings.NewReader(string(all)), audit.VerifyOptions{}); err == nil {
		t.Error("a keyed log verified without its key")
	}
}

// A policy's revision is one value wherever it is shown: the server log, /readyz, the metrics
// and every decision record, for the policy served through a symbolic link; and the same as the
// same files loaded through their own directory (as CI or another replica would).
func TestRevisionIsTheSameEverywhere(t *testing.T) {
	s := startServed(t)
	files, err := policy.ReadPath(s.policyDir)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := policy.Load(files, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := snap.Revision()
	client := servertest.Client(t, s.svc.Server())
	servertest.Check(t, client, extauthz.HTTPRequest{Principal: helpdesk, Host: "helpdesk.acme.internal", Path: "/v1/tickets/4711"}.CheckRequest())
	_, ready := get(t, s.base+"/readyz", "")
	var readyz struct {
		Revision string `json:"policy_revision"`
	}
	json.Unmarshal([]byte(ready), &readyz)
	_, page := get(t, s.base+"/metrics", "")
	info := regexp.MustCompile(`agentauthz_policy_info\{revision="([0-9a-f]+)"\} 1`).FindStringSubmatch(page)
	s.wait(t)
	serving := logLines(t, s.serverLog.String(), "agentauthz serving")
	data, _ := os.ReadFile(s.logPath)
	var rec struct {
		Revision string `json:"policy_revision"`
	}
	json.Unmarshal(data, &rec)
	shown := map[string]string{"/readyz": readyz.Revision, "decision log": rec.Revision}
	if info != nil {
		shown["metrics"] = info[1]
	}
	if len(serving) == 1 {
		shown["server log"], _ = serving[0]["policy_revision"].(string)
	}
	if len(shown) != 4 {
		t.Fatalf("revision not found everywhere: %v", shown)
	}
	for where, rev := range shown {
		if rev != want {
			t.Errorf("%s shows revision %q, want %q (the same files through their own path)", where, rev, want)
		}
	}
}

// A clean shutdown loses no decision: every check answered before serve stopped is in the log
// when Run returns, in one chain that verifies, even when the checks came faster than a batch
// is written and no record had been written yet.
func TestShutdownWritesEveryDecision(t *testing.T) {
	s := startServed(t)
	client := servertest.Client(t, s.svc.Server())
	const callers, each = 8, 50
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			for i := range each {
				path := "/v1/tickets/" + strconv.Itoa(c*1000+i)
				resp, err := client.Check(context.Background(), extauthz.HTTPRequest{Principal: helpdesk, Host: "helpdesk.acme.internal", Path: path}.CheckRequest())
				if err != nil || resp.GetOkResponse() == nil {
					t.Errorf("Check %s: %v %v", path, resp, err)
					return
				}
			}
		})
	}
	wg.Wait()
	s.wait(t)
	files, _ := filepath.Glob(s.logPath + ".*")
	slices.Sort(files)
	files = append(files, s.logPath)
	key, err := audit.ReadKey(s.keyPath)
	if err != nil {
		t.Fatal(err)
	}
	closed := logLines(t, s.serverLog.String(), "decision log closed: record its head")
	if len(closed) != 1 {
		t.Fatalf("%d closing head lines", len(closed))
	}
	head, err := audit.ParseHead(closed[0]["head"].(string))
	if err != nil {
		t.Fatal(err)
	}
	v, _ := audit.NewVerifier(audit.VerifyOptions{Key: key, Heads: []audit.Head{head}})
	total := 0
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		k, err := v.File(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		total += k
	}
	if err := v.Finish(); err != nil || total != callers*each || head.Seq != callers*each {
		t.Errorf("%d records verified (%v), closing head %s; want %d", total, err, head, callers*each)
	}
}
