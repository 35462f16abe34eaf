package service

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/agentauthz/agentauthz/internal/approval"
	"github.com/agentauthz/agentauthz/internal/approval/api"
	"github.com/agentauthz/agentauthz/internal/approval/boltstore"
	"github.com/agentauthz/agentauthz/internal/approval/console"
	"github.com/agentauthz/agentauthz/internal/approval/notify"
	"github.com/agentauthz/agentauthz/internal/approval/pgstore"
	"github.com/agentauthz/agentauthz/internal/approval/signin"
	"github.com/agentauthz/agentauthz/internal/approval/slack"
	"github.com/agentauthz/agentauthz/internal/approval/throttle"
	"github.com/agentauthz/agentauthz/internal/metrics"
	"github.com/agentauthz/agentauthz/policy"
	policyv1 "github.com/agentauthz/agentauthz/proto/agentauthz/policy/v1"
)

// ApprovalConfig configures the approval store and approvers.
type ApprovalConfig struct {
	// DataDir holds the embedded store, unless StoreDSN names a PostgreSQL database.
	DataDir  string
	StoreDSN string
	// Approvers is an approvers file: name, groups and token_sha256 of each approver.
	Approvers string
	// OIDC approvers: ID tokens of the issuer with the client id as audience.
	OIDCIssuer, OIDCClientID, OIDCNameClaim, OIDCGroupsClaim string
	// SlackUsers maps Slack member IDs to approvers, for Slack's buttons.
	SlackUsers string
	// ConsoleURL is where approvers reach the console, told to MCP clients whose call is held.
	ConsoleURL string
	// StateKeyFile holds the key that signs held MCP calls' request state; empty generates one.
	StateKeyFile string
}

// approvals is the running approval machinery of serve.
type approvals struct {
	store approval.Store
	gate  *approval.Gate
	api   *api.API
	// notify delivers the policy's notifiers' announcements and decisions.
	notify     *notify.Dispatcher
	slackUsers slack.Users
	// slack takes Slack's button clicks; nil without a Slack notifier.
	slack *slack.Interactions
	// behindTLSProxy makes the console's session cookie Secure whatever the connection.
	behindTLSProxy bool
}

// DemoApproverTokenEnv holds the demo approver's token; without it one is generated.
const DemoApproverTokenEnv = "AGENTAUTHZ_DEMO_APPROVER_TOKEN"

// openApprovals opens the store and the approvers. demo adds the demo approver, alice of
// it-admins. Failed sign-ins are logged, counted in m and throttled per client address.
func openApprovals(f ApprovalConfig, demo bool, events approval.EventLog, m *metrics.Metrics, log *slog.Logger) (*approvals, error) {
	store, err := openStore(f)
	if err != nil {
		return nil, err
	}
	var auth signin.Chain
	if f.Approvers != "" {
		tokens, err := signin.ReadTokens(f.Approvers)
		if err != nil {
			store.Close()
			return nil, err
		}
		auth = append(auth, tokens)
	}
	if demo && f.Approvers == "" {
		token := os.Getenv(DemoApproverTokenEnv)
		if token == "" {
			var b [24]byte
			_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
			token = base64.RawURLEncoding.EncodeToString(b[:])
			log.Warn("demo approver alice (group it-admins) has a generated token; set "+DemoApproverTokenEnv+" to choose it",
				"approver_token", token)
		}
		auth = append(auth, signin.NewTokens(map[string]approval.Approver{token: {Name: "alice", Groups: []string{"it-admins"}}}))
	}
	if f.OIDCIssuer != "" || f.OIDCClientID != "" {
		if f.OIDCIssuer == "" || f.OIDCClientID == "" {
			store.Close()
			return nil, fmt.Errorf("--oidc-issuer and --oidc-client-id go together")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		o, err := signin.NewOIDC(ctx, signin.OIDCConfig{Issuer: f.OIDCIssuer, ClientID: f.OIDCClientID,
			NameClaim: f.OIDCNameClaim, GroupsClaim: f.OIDCGroupsClaim, Log: log})
		cancel()
		if err != nil {
			store.Close()
			return nil, fmt.Errorf("--oidc-issuer: %v", err)
		}
		auth = append(auth, o)
	}
	var slackUsers slack.Users
	if f.SlackUsers != "" {
		if slackUsers, err = slack.ReadUsers(f.SlackUsers); err != nil {
			store.Close()
			return nil, fmt.Errorf("--slack-users: %v", err)
		}
	}
	if len(auth) == 0 {
		log.Warn("no approvers configured (--approvers FILE): held requests cannot be approved")
	}
	key, err := stateKey(f, log)
	if err != nil {
		store.Close()
		return nil, err
	}
	if f.ConsoleURL != "" {
		if u, err := url.Parse(f.ConsoleURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			store.Close()
			return nil, fmt.Errorf("--approvals-url %q: give the console's address, https://host[:port][/prefix]", f.ConsoleURL)
		}
	}
	a := &approvals{store: store, slackUsers: slackUsers}
	a.gate = &approval.Gate{Store: store, Events: events, Log: log, ConsoleURL: f.ConsoleURL, StateKey: key}
	a.api = &api.API{Store: store, Auth: auth, Events: events, Log: log,
		Throttle: &throttle.Limiter{Log: log, Observe: m.Signin}}
	return a, nil
}

// openStore opens PostgreSQL when a DSN is given (several replicas share it), or the embedded
// store under the data directory (one replica; approvals survive restarts).
func openStore(f ApprovalConfig) (approval.Store, error) {
	if f.StoreDSN != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		st, err := pgstore.Open(ctx, f.StoreDSN)
		if err != nil {
			return nil, fmt.Errorf("--approval-store: %v", err)
		}
		return st, nil
	}
	if err := os.MkdirAll(f.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("--data-dir: %v", err)
	}
	st, err := boltstore.Open(filepath.Join(f.DataDir, "approvals.db"))
	if err != nil {
		return nil, fmt.Errorf("--data-dir: %v", err)
	}
	return st, nil
}

// register adds the approval API and the approvers' web console (/approvals/) to the HTTP listener.
func (a *approvals) register(mux *http.ServeMux) {
	a.api.Register(mux)
	(&console.Console{API: a.api, BehindTLSProxy: a.behindTLSProxy}).Register(mux)
	if a.slack != nil {
		a.slack.Register(mux)
	}
}

// startNotifiers builds the policy's notifiers (reading their secrets from the environment)
// and connects them: each newly held request is announced, each decision reported. With a Slack
// notifier, Slack's button clicks are taken at /v1/slack/interactions.
func (a *approvals) startNotifiers(notifiers []*policyv1.Notifier, m *metrics.Metrics, log *slog.Logger) error {
	a.notify = notify.NewDispatcher(notify.DispatcherConfig{Log: log, Slack: slack.Builder(""),
		Observe: m.Notification})
	if err := a.notify.Load(notifiers); err != nil {
		return fmt.Errorf("notifiers: %v", err)
	}
	a.gate.Announce, a.api.Decided = a.notify.Enqueue, a.notify.Decided
	switch {
	case slack.Any(a.notify.Notifiers()):
		secrets := func() []string { return slack.SigningSecrets(a.notify.Notifiers()) }
		a.slack = &slack.Interactions{API: a.api, Users: a.slackUsers, Secrets: secrets, Log: log}
		if len(a.slackUsers) == 0 {
			log.Warn("no Slack users (--slack-users FILE): Slack's Approve and Deny buttons are refused")
		}
	case len(a.slackUsers) > 0:
		log.Warn("--slack-users is set but the policy has no Slack notifier")
	}
	return nil
}

// withNotifiers wraps a policy loader so that a reloaded policy's notifiers are built as it
// loads: a notifier that cannot be built (its secret's variable unset) fails the reload, and
// the previous policy and notifiers stay in force.
func (a *approvals) withNotifiers(load func(string) (*policy.Snapshot, error)) func(string) (*policy.Snapshot, error) {
	return func(path string) (*policy.Snapshot, error) {
		snap, err := load(path)
		if err != nil {
			return nil, err
		}
		if err := a.notify.Load(snap.Notifiers()); err != nil {
			return nil, fmt.Errorf("notifiers: %v", err)
		}
		return snap, nil
	}
}

// stopNotifiers delivers what is queued, for up to 10 seconds, and logs what is not.
func (a *approvals) stopNotifiers() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a.notify.Close(ctx)
}

// maintain purges long-ended approvals and reports how many are pending, until ctx ends.
func (a *approvals) maintain(ctx context.Context, m *metrics.Metrics, log *slog.Logger) {
	approval.Maintain(ctx, a.store, approval.Retention{Keep: 7 * 24 * time.Hour, Every: 30 * time.Second},
		m.SetPending, log)
}

// stateKey reads the key that signs held MCP calls' request state, or generates one: a state
// then holds only on this process, and an MCP client retrying on another replica, or after a
// restart, is asked to call again without it.
func stateKey(f ApprovalConfig, log *slog.Logger) ([]byte, error) {
	if f.StateKeyFile == "" {
		key := make([]byte, 32)
		_, _ = rand.Read(key) // crypto/rand.Read never fails on supported platforms
		if f.ConsoleURL != "" {
			log.Info("MCP request states are signed with a key generated at start; give --mcp-state-key-file to share one across replicas")
		}
		return key, nil
	}
	key, err := os.ReadFile(f.StateKeyFile)
	if err != nil {
		return nil, fmt.Errorf("--mcp-state-key-file: %v", err)
	}
	key = bytes.TrimRight(key, "\r\n")
	if len(key) < 32 {
		return nil, fmt.Errorf("--mcp-state-key-file: the key must be at least 32 bytes, not %d", len(key))
	}
	return key, nil
}
