package engine

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/agentauthz/agentauthz/internal/audit"
	"github.com/agentauthz/agentauthz/policy/decision"
)

// record counts and logs an answered decision.
func (e *Engine) record(r *Request, res *Result, start time.Time) {
	d := &res.Decision
	took := e.cfg.Clock().Sub(start)
	e.cfg.Metrics.Check(d, took)
	source := res.Source
	if source == "" {
		source = SourceNone
	}
	e.cfg.Metrics.Identity(source, d)
	if d.ShadowRule != "" {
		e.cfg.Metrics.Shadow(d.ShadowRule, d.ShadowCode)
	}
	if e.cfg.Decisions == nil {
		return
	}
	rec := audit.Decision{
		ID:             res.ID,
		RequestID:      r.RequestID,
		Agent:          res.Agent,
		IdentitySource: res.Source,
		Issuer:         res.Issuer,
		Subject:        res.Subject,
		Host:           r.Host,
		Method:         r.Method,
		Path:           e.cfg.RedactQuery.Target(r.Target),
		Rule:           d.Rule,
		Outcome:        d.Outcome.String(),
		Code:           string(d.Code),
		Status:         d.Status(),
		Latency:        took,
		PolicyRevision: res.Revision,
	}
	if rec.Code == "" {
		rec.Code = string(decision.CodeInternal)
	}
	if len(r.Body) > 0 {
		// Spelled in place and converted once: one allocation, not a hex string and a copy.
		const prefix = "sha256:"
		sum := sha256.Sum256(r.Body)
		var b [len(prefix) + 2*sha256.Size]byte
		copy(b[:], prefix)
		hex.Encode(b[len(prefix):], sum[:])
		rec.BodyDigest = string(b[:])
	}
	if c := d.MCP; c != nil {
		rec.MCPServer, rec.MCPMethod, rec.MCPName = c.Server, c.Method, c.Name
		if status, _, ok := d.MCPAnswer(""); ok {
			rec.Status = status // what the MCP client got: a tool's error result is a 200
		}
	}
	if d.ShadowRule != "" {
		rec.ShadowRule, rec.ShadowCode, rec.ShadowOutcome = d.ShadowRule, string(d.ShadowCode), d.ShadowOutcome.String()
	}
	// A record a full queue dropped was counted and logged there, at most once a second: one
	// line per decision here would flood the server log just when the disk is in trouble.
	if err := e.cfg.Decisions.Decision(rec); err != nil && !errors.Is(err, audit.ErrFull) {
		e.cfg.Log.Error("decision not recorded", "decision_id", res.ID, "error", err.Error())
	}
}
