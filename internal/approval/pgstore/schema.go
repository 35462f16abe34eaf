package pgstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// pgMigrations are the schema's versions, in order: migration i brings the schema to version
// i+1. Append, never edit: a database remembers which it has (agentauthz_approval_schema).
var pgMigrations = [][]string{
	{ // 1
		`CREATE TABLE IF NOT EXISTS agentauthz_approvals (
			id            text PRIMARY KEY,
			state         text NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'expired', 'used')),
			agent         text NOT NULL,
			digest        text NOT NULL,
			rule          text NOT NULL,
			reason        text NOT NULL,
			method        text NOT NULL,
			host          text NOT NULL,
			path          text NOT NULL,
			body          text NOT NULL,
			content_type  text NOT NULL,
			approvers     text[] NOT NULL,
			notify        text[] NOT NULL,
			created_at    timestamptz NOT NULL,
			expires_at    timestamptz NOT NULL,
			use_within_ns bigint NOT NULL,
			decided_at    timestamptz,
			decided_by    text NOT NULL,
			comment       text NOT NULL,
			use_by        timestamptz,
			used_at       timestamptz
		)`,
		// At most one live approval per request: what makes Hold safe across replicas.
		`CREATE UNIQUE INDEX IF NOT EXISTS agentauthz_approvals_live
			ON agentauthz_approvals (agent, digest) WHERE state IN ('pending', 'approved')`,
		`CREATE INDEX IF NOT EXISTS agentauthz_approvals_created ON agentauthz_approvals (created_at DESC, id)`,
	},
	{ // 2
		// The live rows of a rule, for Hold's Limits (a live agent's rows are the live index's).
		`CREATE INDEX IF NOT EXISTS agentauthz_approvals_live_rule
			ON agentauthz_approvals (rule) WHERE state IN ('pending', 'approved')`,
	},
	{ // 3
		// The denials of a request, for Hold's Limits.DenialStands.
		`CREATE INDEX IF NOT EXISTS agentauthz_approvals_denied
			ON agentauthz_approvals (agent, digest, created_at DESC) WHERE state = 'denied'`,
	},
	{ // 4
		// The approval condition that held the request, shown to approvers.
		`ALTER TABLE agentauthz_approvals ADD COLUMN IF NOT EXISTS hold_condition text NOT NULL DEFAULT ''`,
	},
}

// pgMigrateLock is the advisory lock key that serialises replicas migrating at the same time.
const pgMigrateLock int64 = 0x6167656e7461757a // "agentauz"

// migrate brings the schema to the latest version, once, whoever else tries at the same time.
func (p *Store) migrate(ctx context.Context) error {
	return pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, pgMigrateLock); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS agentauthz_approval_schema (
			version    integer PRIMARY KEY,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`); err != nil {
			return err
		}
		var have int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM agentauthz_approval_schema`).Scan(&have); err != nil {
			return err
		}
		if have > len(pgMigrations) {
			return fmt.Errorf("the approval schema is at version %d, newer than this build's %d", have, len(pgMigrations))
		}
		for v := have + 1; v <= len(pgMigrations); v++ {
			for _, stmt := range pgMigrations[v-1] {
				if _, err := tx.Exec(ctx, stmt); err != nil {
					return fmt.Errorf("migration %d: %w", v, err)
				}
			}
			if _, err := tx.Exec(ctx, `INSERT INTO agentauthz_approval_schema (version) VALUES ($1)`, v); err != nil {
				return err
			}
		}
		return nil
	})
}
