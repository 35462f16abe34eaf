// Package httpapi serves agentauthz's HTTP listener: liveness and readiness for orchestrators,
// and the routes later parts of the service add (approvals, metrics).
package httpapi

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/agentauthz/agentauthz/policy"
)

// Health answers /healthz (the process is up) and /readyz (a policy is loaded, so Check
// decides instead of refusing everything with policy_not_loaded).
type Health struct {
	Store *policy.Store
	// Draining, once closed, makes /readyz answer 503: the server is shutting down.
	Draining <-chan struct{}
}

// Register adds the health routes to mux.
func (h Health) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", h.healthz)
	mux.HandleFunc("GET /readyz", h.readyz)
}

func (Health) healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (h Health) readyz(w http.ResponseWriter, _ *http.Request) {
	select {
	case <-h.Draining:
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "draining", "reason": "shutting down"})
		return
	default:
	}
	snap := h.Store.Load()
	failure := h.Store.LastFailure()
	if snap == nil {
		body := map[string]any{"status": "not ready", "reason": "no policy loaded yet"}
		if failure != nil {
			body["last_load"] = failureJSON(failure)
		}
		writeJSON(w, http.StatusServiceUnavailable, body)
		return
	}
	st := snap.Stats()
	body := map[string]any{
		"status":          "ready",
		"policy_revision": snap.Revision(),
		"agents":          st.Agents,
		"hosts":           st.Hosts,
		"routes":          st.Routes,
		"mcp_servers":     st.MCPServers,
		"mcp_tools":       st.MCPTools,
	}
	if failure != nil {
		// Still ready: the last good policy serves. Operators see why the new one did not load.
		body["last_load"] = failureJSON(failure)
	}
	writeJSON(w, http.StatusOK, body)
}

func failureJSON(f *policy.LoadFailure) map[string]any {
	return map[string]any{
		"ok":       false,
		"at":       f.At.UTC().Format(time.RFC3339Nano),
		"problems": f.Problems,
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("content-type", "application/json")
	w.Header().Set("cache-control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client went away; nothing to do
}
