package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/agentauthz/agentauthz/approval"
	"github.com/agentauthz/agentauthz/metrics"
)

// approvalFlags configure the approval store and approvers.
type approvalFlags struct {
	dataDir   string
	storeDSN  string
	approvers string
}

// approvals is the running approval machinery of serve.
type approvals struct {
	store approval.Store
	gate  *approval.Gate
	api   *approval.API
}

// DemoApproverTokenEnv holds the demo approver's token; without it one is generated.
const DemoApproverTokenEnv = "AGENTAUTHZ_DEMO_APPROVER_TOKEN"

// openApprovals opens the store and the approvers. demo adds the demo approver, alice of
// it-admins.
func openApprovals(f approvalFlags, demo bool, events approval.EventLog, log *slog.Logger) (*approvals, error) {
	store, err := openStore(f)
	if err != nil {
		return nil, err
	}
	var auth approval.Chain
	if f.approvers != "" {
		tokens, err := approval.ReadTokens(f.approvers)
		if err != nil {
			store.Close()
			return nil, err
		}
		auth = append(auth, tokens)
	}
	if demo && f.approvers == "" {
		token := os.Getenv(DemoApproverTokenEnv)
		if token == "" {
			var b [24]byte
			_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
			token = base64.RawURLEncoding.EncodeToString(b[:])
			log.Warn("demo approver alice (group it-admins) has a generated token; set "+DemoApproverTokenEnv+" to choose it",
				"approver_token", token)
		}
		auth = append(auth, approval.NewTokens(map[string]approval.Approver{token: {Name: "alice", Groups: []string{"it-admins"}}}))
	}
	if len(auth) == 0 {
		log.Warn("no approvers configured (--approvers FILE): held requests cannot be approved")
	}
	a := &approvals{store: store}
	a.gate = &approval.Gate{Store: store, Events: events, Log: log}
	a.api = &approval.API{Store: store, Auth: auth, Events: events, Log: log}
	return a, nil
}

// openStore opens PostgreSQL when a DSN is given (several replicas share it), or the embedded
// store under the data directory (one replica; approvals survive restarts).
func openStore(f approvalFlags) (approval.Store, error) {
	if f.storeDSN != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		st, err := approval.OpenPostgres(ctx, f.storeDSN)
		if err != nil {
			return nil, fmt.Errorf("--approval-store: %v", err)
		}
		return st, nil
	}
	if err := os.MkdirAll(f.dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("--data-dir: %v", err)
	}
	st, err := approval.OpenBolt(filepath.Join(f.dataDir, "approvals.db"))
	if err != nil {
		return nil, fmt.Errorf("--data-dir: %v", err)
	}
	return st, nil
}

// register adds the approval API and the approvers' web console (/approvals/) to the HTTP listener.
func (a *approvals) register(mux *http.ServeMux) {
	a.api.Register(mux)
	(&approval.Console{API: a.api}).Register(mux)
}

// maintain purges long-ended approvals and reports how many are pending, until ctx ends.
func (a *approvals) maintain(ctx context.Context, m *metrics.Metrics, log *slog.Logger) {
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		now := time.Now()
		if _, err := a.store.Purge(ctx, now.Add(-7*24*time.Hour)); err != nil && ctx.Err() == nil {
			log.Warn("purging old approvals failed", "error", err.Error())
		}
		if list, err := a.store.List(ctx, approval.Pending, now); err == nil {
			m.SetPending(len(list))
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
