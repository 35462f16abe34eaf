package authzen

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
)

// Metadata is the PDP metadata document served at MetadataPath. Parameters without a value are
// left out, as the specification requires: agentauthz has no search APIs, capabilities or
// signed metadata.
type Metadata struct {
	PDP                       string `json:"policy_decision_point"`
	AccessEvaluationEndpoint  string `json:"access_evaluation_endpoint"`
	AccessEvaluationsEndpoint string `json:"access_evaluations_endpoint"`
}

// MetadataFor is the metadata document of the PDP identified by pdp.
func MetadataFor(pdp string) Metadata {
	return Metadata{PDP: pdp, AccessEvaluationEndpoint: pdp + EvaluationPath, AccessEvaluationsEndpoint: pdp + EvaluationsPath}
}

// CheckPDP says why pdp cannot be a PDP identifier, or returns nil: it must be an https URL
// with a host and without userinfo, path, query or fragment, such as https://pdp.example.com.
func CheckPDP(pdp string) error {
	u, err := url.Parse(pdp)
	switch {
	case err != nil:
		return fmt.Errorf("authzen: PDP identifier %q is not a URL: %v", pdp, err)
	case u.Scheme != "https" || u.Host == "" || u.Opaque != "":
		return fmt.Errorf("authzen: PDP identifier %q must be an https URL with a host, like https://pdp.example.com", pdp)
	case u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery || u.RawFragment != "":
		return fmt.Errorf("authzen: PDP identifier %q must be https://HOST[:PORT] alone: no userinfo, path, trailing slash, query or fragment", pdp)
	case u.String() != pdp:
		return fmt.Errorf("authzen: PDP identifier %q must be written as %q", pdp, u.String())
	}
	return nil
}

// serveMetadata answers GET (and HEAD) of the metadata document. It needs no authentication:
// PEPs read it to find the endpoints. Without a configured identifier, the PDP is the scheme
// and Host the document was asked for at (http on a plaintext listener, which the
// specification's PEPs will not accept: configure Config.PDP where PEPs reach agentauthz through
// TLS).
func (h *Handler) serveMetadata(w http.ResponseWriter, r *http.Request) {
	echoRequestID(w, r)
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "use GET")
		return
	}
	pdp, cache := h.cfg.PDP, "max-age=300"
	if pdp == "" {
		cache = "no-cache" // a document per Host
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		pdp = scheme + "://" + r.Host
	}
	data, err := json.Marshal(MetadataFor(pdp))
	if err != nil {
		writeError(w, http.StatusInternalServerError, "the metadata document could not be written")
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", cache)
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(data) // the caller may be gone
	}
}
