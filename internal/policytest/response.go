package policytest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/agentauthz/agentauthz/internal/engine"
	"github.com/agentauthz/agentauthz/policy/response"
)

// Response is an upstream's answer to a case's (or a check's) allowed request, and in a case
// what the agent must read of it.
type Response struct {
	// Status is the answer's HTTP status (default 200); ContentType its content type (default
	// application/json); ContentEncoding its content-encoding.
	Status          int    `yaml:"status"`
	ContentType     string `yaml:"content_type"`
	ContentEncoding string `yaml:"content_encoding"`
	// Body is the answer's body, or File names a file holding it, relative to the test file.
	Body string `yaml:"body"`
	File string `yaml:"file"`
	// Expect is what the agent must get.
	Expect ResponseExpect `yaml:"expect"`
}

// ResponseExpect is what a case asserts of the answer the agent gets. Only what is set is
// checked.
type ResponseExpect struct {
	// Removed and Masked are the field paths removed and masked, in any order; an empty list
	// asserts none.
	Removed []string `yaml:"removed"`
	Masked  []string `yaml:"masked"`
	// Body is the JSON the agent reads, compared as JSON (member order and spacing aside).
	Body string `yaml:"body"`
	// Refused asserts the answer is refused with 502; Status the status the agent gets.
	Refused bool `yaml:"refused"`
	Status  int  `yaml:"status"`
	// Outcome is passed, reduced, withheld or refused.
	Outcome string `yaml:"outcome"`
}

// read fills Body from File, relative to dir.
func (r *Response) read(dir string) error {
	if r.File != "" && r.Body != "" {
		return fmt.Errorf("response: give body or file, not both")
	}
	if r.File != "" {
		file := r.File
		if !filepath.IsAbs(file) {
			file = filepath.Join(dir, file)
		}
		data, err := os.ReadFile(file)
		if err != nil {
			return fmt.Errorf("response: %v", err)
		}
		r.Body = string(data)
	}
	return nil
}

// ApplyResponse applies the response rule of an allowed decision to the answer r, as the
// server's ext_proc front door does; an answer to a request whose decision names no rule passes
// as it is. agent and id are the decision's.
func ApplyResponse(ctx context.Context, e *engine.Engine, res *engine.Result, r *Response) engine.ResponseResult {
	in := engine.ResponseInput{Rule: res.Decision.Response, Agent: res.Agent, DecisionID: res.ID,
		Status: r.Status, ContentType: r.ContentType, ContentEncoding: r.ContentEncoding, Body: []byte(r.Body)}
	if in.Status == 0 {
		in.Status = 200
	}
	if in.ContentType == "" {
		in.ContentType = "application/json"
	}
	if in.Rule == "" {
		return engine.ResponseResult{Status: in.Status, Body: in.Body, Outcome: response.Passed}
	}
	return e.FilterResponse(ctx, in)
}

// judgeResponse checks what the agent gets of the case's answer.
func (c *Case) judgeResponse(ctx context.Context, e *engine.Engine, res *engine.Result) []string {
	if !res.Decision.Allowed() {
		return []string{"response: the request is not allowed, so no answer comes back"}
	}
	got := ApplyResponse(ctx, e, res, c.Response)
	x := c.Response.Expect
	var why []string
	summary := fmt.Sprintf("got %d %s", got.Status, got.Outcome)
	if got.Reason != "" {
		summary += " (" + got.Reason + ")"
	}
	if x.Refused && got.Outcome != response.Refused {
		why = append(why, "response: want refused, "+summary)
	}
	if !x.Refused && x.Outcome == "" && got.Outcome == response.Refused && !got.Shadow {
		why = append(why, "response: refused, "+summary)
	}
	if x.Outcome != "" && x.Outcome != string(got.Outcome) {
		why = append(why, "response: want outcome "+x.Outcome+", "+summary)
	}
	if x.Status != 0 && x.Status != got.Status {
		why = append(why, fmt.Sprintf("response: want status %d, %s", x.Status, summary))
	}
	if x.Removed != nil && !sameSet(x.Removed, got.Removed) {
		why = append(why, fmt.Sprintf("response: want removed %q, got %q", x.Removed, got.Removed))
	}
	if x.Masked != nil && !sameSet(x.Masked, got.Masked) {
		why = append(why, fmt.Sprintf("response: want masked %q, got %q", x.Masked, got.Masked))
	}
	if x.Body != "" {
		if eq, err := sameJSON(x.Body, got.Body); err != nil {
			why = append(why, "response: expect.body: "+err.Error())
		} else if !eq {
			why = append(why, fmt.Sprintf("response: want body %s, got %s", strings.TrimSpace(x.Body), got.Body))
		}
	}
	return why
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// sameJSON compares want (the case's) with got as JSON values.
func sameJSON(want string, got []byte) (bool, error) {
	var w, g any
	dec := json.NewDecoder(strings.NewReader(want))
	dec.UseNumber()
	if err := dec.Decode(&w); err != nil {
		return false, fmt.Errorf("not JSON: %v", err)
	}
	dec = json.NewDecoder(bytes.NewReader(got))
	dec.UseNumber()
	if err := dec.Decode(&g); err != nil {
		return false, nil
	}
	wb, _ := json.Marshal(w)
	gb, _ := json.Marshal(g)
	return bytes.Equal(wb, gb), nil
}
