package localstack

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentauthz/agentauthz/internal/childproc"
)

// The outcome lines Run prints for each story.
const (
	StoryOK     = "as the demo expects"
	StoryFailed = "NOT as the demo expects"
)

// play runs the helpdesk agent, approving its held request meanwhile (or saying how), then the
// BI agent, and sums up.
func (s *stack) play(ctx context.Context) error {
	s.out = &lockedWriter{w: s.out}
	s.say("\n== The helpdesk story: %s calls https://%s with its X.509-SVID\n", helpdeskID, s.envoyAddr)
	watch, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		s.watchApprovals(watch)
	}()
	hdErr := s.runAgent(ctx, "helpdesk-agent", s.bins.helpdeskAgent, "helpdesk")
	stopWatch()
	<-watched
	if ctx.Err() != nil {
		return ctx.Err()
	}

	s.say("\n== The BI story: %s calls https://%s with its X.509-SVID\n", biID, s.envoyAddr)
	biErr := s.runAgent(ctx, "bi-agent", s.bins.biAgent, "bi")
	if ctx.Err() != nil {
		return ctx.Err()
	}

	s.say("\n== What happened\n")
	for _, r := range []struct {
		story string
		err   error
	}{{"helpdesk", hdErr}, {"bi", biErr}} {
		if r.err != nil {
			s.say("   %-8s story: %s (%v; helpdesk-agent.log, bi-agent.log)\n", r.story, StoryFailed, r.err)
		} else {
			s.say("   %-8s story: %s\n", r.story, StoryOK)
		}
	}
	return errors.Join(hdErr, biErr)
}

// verifyDecisionLog runs `agentauthz audit verify` on the decision log once agentauthz has
// stopped and closed it.
func (s *stack) verifyDecisionLog() {
	out, err := exec.Command(s.bins.agentauthz, "audit", "verify", s.path("decisions.log")).CombinedOutput()
	if err != nil {
		s.say("   agentauthz audit verify: %v\n%s", err, out)
		return
	}
	s.say("   agentauthz audit verify: %s", out)
}

// runAgent runs the demo agent for one story, its narration streamed into ours, and returns
// when it exits.
func (s *stack) runAgent(ctx context.Context, name, bin, story string) error {
	out := &indenter{w: s.out, prefix: "   │ "}
	p, err := s.startSpec(childproc.Spec{Name: name, Path: bin, Output: out, Args: []string{
		"-story", story,
		"-envoy", "https://" + s.envoyAddr,
		"-spiffe-socket", s.spire.Agent.Addr(),
		"-envoy-id", envoyID.String(),
		"-approvals-url", s.approvalsURL(),
		"-poll", "1s",
		"-approval-timeout", s.cfg.ApprovalTimeout.String(),
	}})
	if err != nil {
		return err
	}
	select {
	case <-p.Done():
	case <-ctx.Done():
		return ctx.Err()
	}
	out.Flush()
	if _, err := p.Exited(); err != nil {
		return fmt.Errorf("%s: %v", name, err)
	}
	return nil
}

// watchApprovals is the demo approver: it lists pending approvals through the approvals API as
// alice and approves each (AutoApprove), or says how to.
func (s *stack) watchApprovals(ctx context.Context) {
	seen := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
		var list struct {
			Approvals []struct {
				ID, Agent, Method, Host, Path, Rule, Reason string
				Approvers                                   []string
			} `json:"approvals"`
		}
		if err := s.approvals(ctx, "GET", "/v1/approvals?state=pending", &list); err != nil {
			continue // agentauthz answers again on the next round
		}
		for _, a := range list.Approvals {
			if seen[a.ID] {
				continue
			}
			seen[a.ID] = true
			s.say("   ▸ the approvals API lists %s pending: %s %s%s by %s (rule %s, approvers %s)\n",
				a.ID, a.Method, a.Host, a.Path, a.Agent, a.Rule, strings.Join(a.Approvers, ", "))
			if !s.cfg.AutoApprove {
				s.say("   ▸ approve it as alice (group it-admins), in one of:\n")
				s.say("       curl -X POST -H 'Authorization: Bearer %s' %s/v1/approvals/%s/approve\n", s.aliceToken, s.approvalsURL(), a.ID)
				s.say("       AGENTAUTHZ_APPROVER_TOKEN=%s go run ./cmd/agentauthz approvals approve %s --url %s\n", s.aliceToken, a.ID, s.approvalsURL())
				s.say("       the console, %s/approvals/, signed in with that token\n", s.approvalsURL())
				s.say("   ▸ waiting for you (demo-stack -auto-approve approves by itself)\n")
				continue
			}
			var decided struct {
				State     string `json:"state"`
				DecidedBy string `json:"decided_by"`
			}
			if err := s.approvals(ctx, "POST", "/v1/approvals/"+a.ID+"/approve", &decided); err != nil {
				s.say("   ▸ approving %s failed: %v\n", a.ID, err)
				continue
			}
			s.say("   ▸ approved as alice through POST %s/v1/approvals/%s/approve: %s by %s\n",
				s.approvalsURL(), a.ID, decided.State, decided.DecidedBy)
		}
	}
}

// approvals calls the approvals API as alice and decodes the answer into v.
func (s *stack) approvals(ctx context.Context, method, path string, v any) error {
	var body io.Reader
	if method == "POST" {
		body = strings.NewReader(`{"comment":"approved by demo-stack -auto-approve"}`)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.approvalsURL()+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("authorization", "Bearer "+s.aliceToken)
	req.Header.Set("content-type", "application/json")
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, bytes.TrimSpace(data))
	}
	return json.Unmarshal(data, v)
}

// summarize counts agentauthz's decisions by agent and answer, from its decision log. The log
// is written in batches: read after agentauthz stopped, it holds every decision.
func (s *stack) summarize() {
	f, err := os.Open(s.path("decisions.log"))
	if err != nil {
		s.say("   no decision log: %v\n", err)
		return
	}
	defer f.Close()
	counts := map[string]map[string]int{}
	total := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var rec struct {
			Kind    string `json:"kind"`
			Msg     string `json:"msg"`
			Agent   string `json:"agent"`
			Outcome string `json:"outcome"`
			Code    string `json:"code"`
			Status  int    `json:"status"`
		}
		if json.Unmarshal(sc.Bytes(), &rec) != nil || (rec.Kind != "decision" && rec.Msg != "decision") {
			continue
		}
		answer := rec.Outcome
		if rec.Status != 200 && rec.Status != 0 {
			answer = fmt.Sprintf("%d %s", rec.Status, rec.Code)
		}
		if counts[rec.Agent] == nil {
			counts[rec.Agent] = map[string]int{}
		}
		counts[rec.Agent][answer]++
		total++
	}
	s.say("   agentauthz decided %d requests (its hash-chained decision log, %s):\n", total, s.path("decisions.log"))
	for _, agent := range []spiffeid.ID{helpdeskID, biID} {
		c := counts[agent.String()]
		var parts []string
		for answer, n := range c {
			parts = append(parts, fmt.Sprintf("%s ×%d", answer, n))
		}
		slices.Sort(parts)
		s.say("     %-38s %s\n", agent, strings.Join(parts, ", "))
	}
}

// lockedWriter serialises writes from the narration's goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// indenter writes whole lines to w, each after prefix.
type indenter struct {
	w      io.Writer
	prefix string
	buf    []byte
}

func (in *indenter) Write(p []byte) (int, error) {
	in.buf = append(in.buf, p...)
	for {
		i := bytes.IndexByte(in.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		if _, err := fmt.Fprintf(in.w, "%s%s\n", in.prefix, in.buf[:i]); err != nil {
			return len(p), err
		}
		in.buf = in.buf[i+1:]
	}
}

// Flush writes a last line without its newline.
func (in *indenter) Flush() {
	if len(in.buf) > 0 {
		fmt.Fprintf(in.w, "%s%s\n", in.prefix, in.buf)
		in.buf = nil
	}
}
