package service

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"os"

	"github.com/agentauthz/agentauthz/internal/authzen"
)

// AuthZENConfig configures the AuthZEN Authorization API, served on the HTTP listener and,
// with Addr, on a listener of its own.
type AuthZENConfig struct {
	// Addr is host:port of a listener serving the API alone: over TLS with agentauthz's
	// X.509-SVID when SPIFFE.Socket is set (callers may then present their SVIDs), plaintext
	// otherwise. Empty serves the API on the HTTP listener only.
	Addr string
	// PEPTokens is a PEP tokens file: the name and token_sha256 of each PEP.
	PEPTokens string
	// AllowedPEPs is the comma-separated SPIFFE IDs that are PEPs when they present their
	// X.509-SVID on Addr. Any other SVID may ask only about itself.
	AllowedPEPs string
	// PDP is the PDP identifier the metadata document names (https://HOST[:PORT]); empty
	// derives it from each metadata request.
	PDP string
}

// DemoPEPTokenEnv holds the demo PEP's token; without it one is generated.
const DemoPEPTokenEnv = "AGENTAUTHZ_DEMO_PEP_TOKEN"

// openAuthZEN reads who may call the AuthZEN API. demo adds the demo PEP's token when no tokens
// file is given.
func openAuthZEN(f AuthZENConfig, sp *spiffe, demo bool, log *slog.Logger) (*authzen.Config, error) {
	cfg := &authzen.Config{PDP: f.PDP, Log: log}
	if f.PDP != "" {
		if err := authzen.CheckPDP(f.PDP); err != nil {
			return nil, fmt.Errorf("--authzen-pdp-url: %v", err)
		}
	}
	ids, err := parseIDs("--authzen-allowed-peps", f.AllowedPEPs)
	if err != nil {
		return nil, err
	}
	if len(ids) > 0 && (f.Addr == "" || sp.authzenTLS == nil) {
		// Certificates are verified only on the AuthZEN listener's SPIFFE TLS: listing PEPs
		// that can never present one would leave the operator believing they can.
		return nil, fmt.Errorf("--authzen-allowed-peps needs --authzen-addr and --spiffe-socket: PEPs present their SVIDs on the AuthZEN listener's mTLS")
	}
	cfg.AllowedPEPs = ids
	if f.PEPTokens != "" {
		if cfg.Tokens, err = authzen.ReadTokens(f.PEPTokens); err != nil {
			return nil, fmt.Errorf("--authzen-peps: %v", err)
		}
	} else if demo {
		token := os.Getenv(DemoPEPTokenEnv)
		if token == "" {
			var b [24]byte
			_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
			token = base64.RawURLEncoding.EncodeToString(b[:])
			log.Warn("the demo PEP has a generated AuthZEN token; set "+DemoPEPTokenEnv+" to choose it",
				"pep_token", token)
		}
		cfg.Tokens = authzen.NewTokens(map[string]string{token: "demo-pep"})
	}
	if cfg.Tokens.Len() == 0 && sp.authzenTLS == nil {
		log.Warn("no AuthZEN PEPs configured (--authzen-peps FILE): every AuthZEN call is refused")
	}
	return cfg, nil
}
