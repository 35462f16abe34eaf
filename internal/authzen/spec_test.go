package authzen_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentauthz/agentauthz/internal/authzen"
)

// specCase is one file of testdata/spec: a request in the shape the specification describes
// (its own examples' shapes, its error cases, and the same shapes over the demo policy) and the
// answer the specification requires.
type specCase struct {
	About    string `json:"about"`
	Endpoint string `json:"endpoint"`
	// ContentType replaces application/json when set ("" sends none).
	ContentType *string         `json:"content_type"`
	Request     json.RawMessage `json:"request"`
	// Raw is the body, byte for byte, when Request is not given.
	Raw  *string `json:"raw"`
	Want struct {
		Status int `json:"status"`
		// Message is part of the error message an error answer must hold.
		Message string `json:"message"`
		// Decision is the one decision of a single answer; Evaluations the decisions of a batch,
		// in order, as many as answered.
		Decision    *wantVerdict  `json:"decision"`
		Evaluations []wantVerdict `json:"evaluations"`
	} `json:"want"`
}

// wantVerdict is an expected decision; Code, Status and Rule are compared when set.
type wantVerdict struct {
	Decision bool   `json:"decision"`
	Code     string `json:"code"`
	Status   int    `json:"status"`
	Rule     string `json:"rule"`
}

func (w wantVerdict) matches(v verdict) bool {
	return w.Decision == v.Decision && (w.Code == "" || w.Code == v.Code) &&
		(w.Status == 0 || w.Status == v.Status) && (w.Rule == "" || w.Rule == v.Rule)
}

// TestSpecShapes: every request of testdata/spec gets the answer the specification describes:
// 200 with application/json and a decision, or an evaluations array in request order (cut
// short only by the short-circuit semantics) whose members each have a boolean decision and
// at most an object context; or the error status with an error message string; and always the
// X-Request-ID echoed.
func TestSpecShapes(t *testing.T) {
	p := startPDP(t)
	paths, err := filepath.Glob("testdata/spec/*.json")
	if err != nil || len(paths) < 40 {
		t.Fatalf("testdata/spec holds %d cases (%v)", len(paths), err)
	}
	for _, path := range paths {
		name := strings.TrimSuffix(filepath.Base(path), ".json")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var c specCase
			if err := json.Unmarshal(data, &c); err != nil {
				t.Fatal(err)
			}
			body := string(c.Request)
			if c.Raw != nil {
				body = *c.Raw
			}
			header := map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + pepToken,
				"X-Request-ID": "req-" + name}
			if c.ContentType != nil {
				header["Content-Type"] = *c.ContentType
			}
			r := do(t, call{url: p.base + c.Endpoint, body: body, header: header})
			if r.status != c.Want.Status {
				t.Fatalf("%s: status %d, want %d: %s", c.About, r.status, c.Want.Status, r.body)
			}
			if got := r.header.Values("X-Request-ID"); len(got) != 1 || got[0] != "req-"+name {
				t.Errorf("X-Request-ID echoed as %q", got)
			}
			if r.status != 200 {
				if ct := r.header.Get("Content-Type"); ct != "text/plain; charset=utf-8" || !strings.Contains(string(r.body), c.Want.Message) {
					t.Errorf("error answer %q with body %q, want an error message string holding %q", ct, r.body, c.Want.Message)
				}
				return
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			m := r.object(t)
			switch {
			case c.Want.Decision != nil:
				if _, batch := m["evaluations"]; batch {
					t.Errorf("a single answer carries evaluations: %s", r.body)
				}
				if v := readVerdict(t, m); !c.Want.Decision.matches(v) {
					t.Errorf("%s: got %+v, want %+v: %s", c.About, v, *c.Want.Decision, r.body)
				}
			default:
				if _, single := m["decision"]; single {
					t.Errorf("a batch answer carries a top-level decision: %s", r.body)
				}
				arr, _ := m["evaluations"].([]any)
				if len(arr) != len(c.Want.Evaluations) {
					t.Fatalf("%s: %d decisions, want %d: %s", c.About, len(arr), len(c.Want.Evaluations), r.body)
				}
				for i, raw := range arr {
					if v := readVerdict(t, raw); !c.Want.Evaluations[i].matches(v) {
						t.Errorf("%s: evaluations[%d] = %+v, want %+v", c.About, i, v, c.Want.Evaluations[i])
					}
				}
			}
		})
	}
}

// TestSpecEndpoints: the endpoints take POST only, and the metadata document GET, each
// answering another method with 405, Allow and the request id; the metadata document is what
// the specification requires: 200, application/json, the PDP identifier and both evaluation
// endpoints, nothing without a value, and no authentication needed.
func TestSpecEndpoints(t *testing.T) {
	p := startPDP(t)
	for _, tc := range []struct{ method, path, allow string }{
		{"GET", authzen.EvaluationPath, "POST"},
		{"PUT", authzen.EvaluationsPath, "POST"},
		{"POST", authzen.MetadataPath, "GET, HEAD"},
	} {
		r := do(t, call{method: tc.method, url: p.base + tc.path, header: map[string]string{"X-Request-ID": "m1"}})
		if r.status != 405 || r.header.Get("Allow") != tc.allow || r.header.Get("X-Request-ID") != "m1" {
			t.Errorf("%s %s: %d Allow=%q X-Request-ID=%q", tc.method, tc.path, r.status, r.header.Get("Allow"), r.header.Get("X-Request-ID"))
		}
	}

	r := do(t, call{method: "GET", url: p.base + authzen.MetadataPath, header: map[string]string{}})
	if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("metadata: %d %s: %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	var got map[string]string
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatalf("metadata is not an object of strings: %v: %s", err, r.body)
	}
	want := map[string]string{
		"policy_decision_point":       p.base,
		"access_evaluation_endpoint":  p.base + "/access/v1/evaluation",
		"access_evaluations_endpoint": p.base + "/access/v1/evaluations",
	}
	if len(got) != len(want) {
		t.Errorf("metadata %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("metadata %s = %q, want %q", k, got[k], v)
		}
	}

	// A configured identifier is named as configured.
	q := startPDP(t, func(cfg *serverConfig, _ *pdp) { cfg.AuthZEN.PDP = "https://pdp.acme.internal" })
	r = do(t, call{method: "GET", url: q.base + authzen.MetadataPath, header: map[string]string{}})
	if !strings.Contains(string(r.body), `"access_evaluations_endpoint":"https://pdp.acme.internal/access/v1/evaluations"`) ||
		!strings.Contains(string(r.body), `"policy_decision_point":"https://pdp.acme.internal"`) {
		t.Errorf("configured metadata: %s", r.body)
	}
	if r = do(t, call{method: "GET", url: q.base + authzen.MetadataPath + "/tenant1", header: map[string]string{}}); r.status != 404 {
		t.Errorf("a tenant's metadata path: %d, want 404 (one PDP)", r.status)
	}
}

func TestCheckPDP(t *testing.T) {
	for _, ok := range []string{"https://pdp.example.com", "https://pdp.example.com:8443", "https://10.0.0.1"} {
		if err := authzen.CheckPDP(ok); err != nil {
			t.Errorf("CheckPDP(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "http://pdp.example.com", "https://", "https://pdp.example.com/",
		"https://pdp.example.com/tenant", "https://pdp.example.com?x", "https://pdp.example.com#f",
		"https://u@pdp.example.com", "HTTPS://pdp.example.com", "pdp.example.com", "https:pdp"} {
		if err := authzen.CheckPDP(bad); err == nil {
			t.Errorf("CheckPDP(%q) accepted it", bad)
		}
	}
}
