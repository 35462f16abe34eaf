package target_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/agentauthz/agentauthz/policy/target"
)

// knownRules are the Rule values Parse may return, by Part.
var knownRules = map[string]map[string]bool{
	"path": {
		"empty": true, "too_long": true, "not_origin_form": true, "empty_segment": true,
		"dot_segment": true, "bad_escape": true, "encoded_slash": true, "encoded_backslash": true,
		"encoded_dot": true, "encoded_unreserved": true, "double_encoding": true, "semicolon": true,
		"nul": true, "control": true, "non_ascii": true, "fragment": true, "backslash": true,
		"space": true, "character": true,
	},
	"query": {
		"empty": true, "bad_escape": true, "empty_pair": true, "empty_name": true, "bad_name": true,
		"bad_value": true, "semicolon": true, "nul": true, "control": true, "non_ascii": true,
		"fragment": true, "backslash": true, "space": true, "character": true,
	},
}

func FuzzParse(f *testing.F) {
	for _, tc := range loadHostile(f) {
		f.Add(tc.raw)
	}
	for _, tc := range loadAccepted(f) {
		f.Add(tc.raw)
	}
	for _, s := range []string{
		"/v1/tickets?status=open&limit=10", "/a?q=%C3%A9&r=%F0%9F%98%80", "/a?q=%c2%a0%e2%82%ac",
		"/%20/%2B?%2B=%2B", "/a?x=%c3", "/a?x=%e2%82+",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		// A form body is read as a query is: CheckForm agrees with Parse on "/?" and the body.
		if _, q, ok := strings.Cut(raw, "?"); ok && len(q)+2 <= target.MaxLen {
			_, perr := target.Parse("/?" + q)
			if ferr := target.CheckForm(q); (perr == nil) != (ferr == nil) {
				t.Fatalf("CheckForm(%q) = %v, but Parse of it as a query = %v", q, ferr, perr)
			}
		}
		tg, err := target.Parse(raw)
		if err != nil {
			var te *target.Error
			if !errors.As(err, &te) {
				t.Fatalf("Parse(%q): error %T is not *target.Error", raw, err)
			}
			if !knownRules[te.Part][te.Rule] || te.Message == "" {
				t.Fatalf("Parse(%q): unknown Part/Rule %q/%q (%q)", raw, te.Part, te.Rule, te.Message)
			}
			if tg != (target.Target{}) {
				t.Fatalf("Parse(%q): non-zero Target %+v with error", raw, tg)
			}
			// A query refusal means the path alone was fine.
			if te.Part == "query" {
				path, _, _ := strings.Cut(raw, "?")
				if _, err := target.Parse(path); err != nil {
					t.Fatalf("Parse(%q) refused the query, but its path %q is refused too: %v", raw, path, err)
				}
			}
			return
		}
		checkAccepted(t, raw, tg)
		// Parsing is stable: the parts, re-parsed, give the same answer.
		tg2, err := target.Parse(tg.Path)
		if err != nil || tg2.Path != tg.Path || tg2.Query != "" {
			t.Fatalf("Parse(%q) accepted, but its Path %q re-parses to %+v, %v", raw, tg.Path, tg2, err)
		}
	})
}

func BenchmarkParse(b *testing.B) {
	const raw = "/v1/tickets?status=open&limit=10"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := target.Parse(raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseEncoded exercises the percent-decoding value check, which must not allocate.
func BenchmarkParseEncoded(b *testing.B) {
	const raw = "/v1/tickets?q=caf%C3%A9+%E2%82%AC&limit=10"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := target.Parse(raw); err != nil {
			b.Fatal(err)
		}
	}
}
