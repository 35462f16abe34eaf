package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/pflag"

	"github.com/agentauthz/agentauthz/internal/engine"
	"github.com/agentauthz/agentauthz/internal/policytest"
	"github.com/agentauthz/agentauthz/policy/response"
)

// responseFlags are check's flags for an upstream answer to apply the response rule to.
type responseFlags struct {
	file, contentType, encoding string
	status                      int
}

func addResponseFlags(fs *pflag.FlagSet) *responseFlags {
	f := &responseFlags{}
	fs.StringVar(&f.file, "response-file", "", "a file holding the upstream's answer to the request: show what the agent reads of it under the route's or tool's response rule")
	fs.IntVar(&f.status, "response-status", 200, "with --response-file: the answer's HTTP status")
	fs.StringVar(&f.contentType, "response-content-type", "application/json", "with --response-file: the answer's content type")
	fs.StringVar(&f.encoding, "response-encoding", "", "with --response-file: the answer's content-encoding")
	return f
}

// apply shows what the agent reads of the answer, and returns check's exit code: a refused
// answer is a deny, a decision like any other (exit status 0, or 3 with failOnDeny).
func (f *responseFlags) apply(e *engine.Engine, res *engine.Result, failOnDeny bool, stdout, stderr io.Writer) int {
	denied := exitOK
	if failOnDeny {
		denied = exitDenied
	}
	if !res.Decision.Allowed() {
		fmt.Fprintln(stdout, "response: the request is denied, so no answer comes back")
		return denied
	}
	body, err := os.ReadFile(f.file)
	if err != nil {
		fmt.Fprintf(stderr, "agentauthz check: %v\n", err)
		return exitError
	}
	got := policytest.ApplyResponse(context.Background(), e, res, &policytest.Response{Status: f.status,
		ContentType: f.contentType, ContentEncoding: f.encoding, Body: string(body)})
	rule := res.Decision.Response
	if rule == "" {
		rule = "(none: the answer passes as it is)"
	}
	shadow := ""
	if got.Shadow {
		shadow = "  (shadow: reported, sent unchanged)"
	}
	fmt.Fprintf(stdout, "response %d %s  rule=%s%s\n", got.Status, got.Outcome, rule, shadow)
	if got.Reason != "" {
		fmt.Fprintf(stdout, "  %s\n", got.Reason)
	}
	for _, p := range got.Removed {
		fmt.Fprintf(stdout, "  removed  %s\n", p)
	}
	for _, p := range got.Masked {
		fmt.Fprintf(stdout, "  masked   %s\n", p)
	}
	fmt.Fprintf(stdout, "%s\n", got.Body)
	if got.Outcome == response.Refused && !got.Shadow {
		return denied
	}
	return exitOK
}
