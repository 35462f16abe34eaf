package approval

import (
	"errors"
	"strconv"
	"time"
)

// Limits bound the live approvals (pending, or approved and not yet used, as of now) that a new
// one may join: of its agent, whatever the rule, and of its rule, whatever the agent. So one
// agent cannot bury approvers (and every console polling the list) under held requests, and
// one rule cannot either, however many agents ask. A zero field bounds nothing.
type Limits struct {
	PerAgent int
	PerRule  int
	// DenialStands makes a denial of the same agent and digest answer in place of a new
	// approval while its approval window (ExpiresAt) lasts. For requests that cannot say they
	// ask again, such as MCP tool calls, which the client repeats identically: without it,
	// every repetition of a denied call would be put to approvers anew.
	DenialStands bool
}

// Any reports whether l bounds anything.
func (l Limits) Any() bool { return l.PerAgent > 0 || l.PerRule > 0 }

// Check says whether a new approval may join agentLive live approvals of its agent and
// ruleLive of its rule: nil, or the *LimitError of the first bound it would pass.
func (l Limits) Check(agentLive, ruleLive int) error {
	switch {
	case l.PerAgent > 0 && agentLive >= l.PerAgent:
		return &LimitError{Scope: LimitAgent, Max: l.PerAgent}
	case l.PerRule > 0 && ruleLive >= l.PerRule:
		return &LimitError{Scope: LimitRule, Max: l.PerRule}
	}
	return nil
}

// ErrLimit means a new approval would pass its Limits. Stores return a *LimitError, which is it.
var ErrLimit = errors.New("approval: too many live approvals")

// The scopes of a LimitError.
const (
	LimitAgent = "agent"
	LimitRule  = "rule"
)

// LimitError says which of Limits a new approval would pass.
type LimitError struct {
	// Scope is LimitAgent or LimitRule.
	Scope string
	// Max is the bound: the live approvals there are already.
	Max int
}

func (e *LimitError) Error() string {
	return "approval: the " + e.Scope + " already has " + strconv.Itoa(e.Max) + " live approvals, its limit"
}

// Is makes errors.Is(err, ErrLimit) true.
func (e *LimitError) Is(target error) bool { return target == ErrLimit }

// DenialStanding reports whether a is a denial whose approval window has not passed at now:
// what answers a Hold with Limits.DenialStands.
func (a Approval) DenialStanding(now time.Time) bool {
	return a.State == Denied && now.Before(a.ExpiresAt)
}

// Live reports whether a is live at now: pending, or approved and not yet used, unlapsed. Live
// approvals count against Limits.
func (a Approval) Live(now time.Time) bool {
	st := a.Current(now)
	return st == Pending || st == Approved
}
