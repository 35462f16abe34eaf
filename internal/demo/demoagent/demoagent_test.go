package demoagent_test

// The stories against a scripted front door, for the agent's own logic: what it sends, how it
// waits for an approval, and how it fails. internal/e2e plays them through real Envoy.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentauthz/agentauthz/internal/demo/demoagent"
)

const approvalID = "apr_aaaaaaaaaaaaaaaaaaaaaaaaaa"

// door is a scripted front door: the helpdesk API's answers, and a password reset held until
// decided (then answered with decision's status and code).
type door struct {
	mu       sync.Mutex
	decision int    // 0 while pending
	code     string // the problem code of a refused retry
	retries  atomic.Int32
	failFor  atomic.Int32 // answer this many first requests 503, as a starting Envoy
	seen     []string
}

func problem(w http.ResponseWriter, status int, code string, extra string) {
	w.Header().Set("content-type", "application/problem+json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"code":%q,"detail":"because","decision_id":"d1"%s}`, code, extra)
}

func (d *door) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if d.failFor.Add(-1) >= 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	body, _ := io.ReadAll(r.Body)
	d.mu.Lock()
	d.seen = append(d.seen, r.Method+" "+r.Host+r.RequestURI+" "+r.Header.Get("Authorization")+" "+r.Header.Get(demoagent.ApprovalHeader))
	decision, code := d.decision, d.code
	d.mu.Unlock()
	w.Header().Set("content-type", "application/json")
	switch {
	case r.URL.Path == "/v1/tickets":
		io.WriteString(w, `{"tickets":[{"id":"1","subject":"a","requester":"x"},{"id":"2","subject":"Password expired","requester":"jdoe"}]}`)
	case r.URL.Path == "/v1/tickets/2":
		io.WriteString(w, `{"id":"2","subject":"Password expired","status":"open","requester":"jdoe"}`)
	case r.URL.Path == "/v1/tickets/2/comments":
		w.WriteHeader(201)
		io.WriteString(w, `{"id":1}`)
	case r.URL.Path == "/v1/users/jdoe/password-reset":
		if !bytes.Contains(body, []byte(demoagent.ResetReason)) {
			problem(w, 400, "body_schema", "")
			return
		}
		switch id := r.Header.Get(demoagent.ApprovalHeader); {
		case id == "":
			problem(w, 428, "approval_required", `,"approval_id":"`+approvalID+`"`)
		case decision == 0:
			d.retries.Add(1)
			problem(w, 428, "approval_required", `,"approval_id":"`+approvalID+`"`)
		case decision == 200:
			io.WriteString(w, `{"status":"reset","notified":true}`)
			d.mu.Lock()
			d.decision, d.code = 403, "approval_used"
			d.mu.Unlock()
		default:
			problem(w, decision, code, "")
		}
	default:
		problem(w, 403, "route_unknown", "")
	}
}

func (d *door) decide(status int, code string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.decision, d.code = status, code
}

func run(t *testing.T, d *door, cfg demoagent.Config) (*demoagent.Report, string, error) {
	t.Helper()
	srv := httptest.NewServer(d)
	t.Cleanup(srv.Close)
	var out bytes.Buffer
	cfg.Envoy, cfg.Out = srv.URL, &out
	if cfg.Stories == nil {
		cfg.Stories = []string{"helpdesk"}
	}
	cfg.PollInterval = 5 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	report, err := demoagent.Run(ctx, cfg)
	return report, out.String(), err
}

func TestWaitsForTheApproval(t *testing.T) {
	d := &door{}
	go func() {
		for d.retries.Load() < 3 {
			time.Sleep(time.Millisecond)
		}
		d.decide(200, "")
	}()
	report, out, err := run(t, d, demoagent.Config{AgentToken: "own"})
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var statuses []int
	for _, s := range report.Story("helpdesk") {
		statuses = append(statuses, s.Status)
	}
	if fmt.Sprint(statuses) != "[200 200 201 428 200 403]" {
		t.Errorf("statuses %v\n%s", statuses, out)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, s := range d.seen {
		if !strings.Contains(s, "Bearer own") {
			t.Errorf("a request without the agent's own token: %s", s)
		}
	}
	if !strings.Contains(out, "agentauthz approvals approve "+approvalID) {
		t.Errorf("no instructions:\n%s", out)
	}
}

func TestStopsWhenTheApprovalIsDenied(t *testing.T) {
	d := &door{}
	d.decide(403, "approval_denied")
	report, out, err := run(t, d, demoagent.Config{})
	if err == nil || !strings.Contains(err.Error(), "approval_denied") {
		t.Fatalf("err %v\n%s", err, out)
	}
	steps := report.Story("helpdesk")
	if last := steps[len(steps)-1]; last.Status != 403 || last.Code != "approval_denied" {
		t.Errorf("last step %+v", last)
	}
}

func TestGivesUpWaiting(t *testing.T) {
	_, out, err := run(t, &door{}, demoagent.Config{ApprovalTimeout: 30 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "not decided") {
		t.Fatalf("err %v\n%s", err, out)
	}
}

func TestUnexpectedAnswersFailTheStory(t *testing.T) {
	// The BI story against a door that knows no GraphQL: the first step is refused.
	_, out, err := run(t, &door{}, demoagent.Config{Stories: []string{"bi", "nonsense"}})
	if err == nil || !strings.Contains(err.Error(), "got 403 route_unknown, want 200") || !strings.Contains(err.Error(), `no story "nonsense"`) {
		t.Fatalf("err %v\n%s", err, out)
	}
}

func TestRetriesWhileTheFrontDoorStarts(t *testing.T) {
	d := &door{}
	d.failFor.Store(2)
	d.decide(200, "")
	if _, out, err := run(t, d, demoagent.Config{StartupWait: 5 * time.Second}); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	d2 := &door{}
	d2.failFor.Store(1)
	if _, _, err := run(t, d2, demoagent.Config{}); err == nil {
		t.Error("without StartupWait a 503 fails the story")
	}
}
