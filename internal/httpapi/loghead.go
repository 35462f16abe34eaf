package httpapi

import (
	"net/http"
	"time"

	"github.com/agentauthz/agentauthz/internal/audit"
)

// LogHead serves GET /v1/decision-log/head: the decision log's head (sequence number and hash
// of its last record), for approvers and auditors to record out of the log writer's reach and
// check the log against later (agentauthz audit verify --head SEQ:HASH).
type LogHead struct {
	Head  func() audit.Head
	Keyed bool
	// File is the log's file, or "stdout".
	File string
	// Authorize answers the request itself (401, 403) and returns false when the caller may not
	// read the head: the approval API's sign-in.
	Authorize func(w http.ResponseWriter, r *http.Request) bool
	// Clock is injected for tests; nil means time.Now.
	Clock func() time.Time
}

// Register adds the route to mux.
func (h LogHead) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/decision-log/head", h.serve)
}

func (h LogHead) serve(w http.ResponseWriter, r *http.Request) {
	if !h.Authorize(w, r) {
		return
	}
	now := time.Now
	if h.Clock != nil {
		now = h.Clock
	}
	head := h.Head()
	writeJSON(w, http.StatusOK, map[string]any{
		"head":  head.String(),
		"seq":   head.Seq,
		"hash":  head.Hash,
		"keyed": h.Keyed,
		"file":  h.File,
		"time":  now().UTC().Format(time.RFC3339Nano),
	})
}
