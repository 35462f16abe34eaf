package docs

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/agentauthz/agentauthz/policy"
)

// TestReferenceHeaderLists: the policy reference names every header agentauthz refuses on every
// host (Host.refuse_headers) and, exactly, the forwarded-context headers it removes unless a host
// trusts them (Host.trust_forwarded_headers), as package policy has them; so does the guide.
func TestReferenceHeaderLists(t *testing.T) {
	ref, err := os.ReadFile("policy-reference.md")
	if err != nil {
		t.Fatal(err)
	}
	row := func(field string) string {
		for _, line := range strings.Split(string(ref), "\n") {
			if strings.HasPrefix(line, "| `"+field+"` |") {
				return line
			}
		}
		t.Fatalf("the reference has no row for %s", field)
		return ""
	}
	refuse := row("refuse_headers")
	guide, err := os.ReadFile(guideFile)
	if err != nil {
		t.Fatal(err)
	}
	for rule, names := range policy.OverrideHeaders() {
		for _, name := range names {
			if !regexp.MustCompile(`[ ,]` + regexp.QuoteMeta(name) + `[ ,]`).MatchString(refuse) {
				t.Errorf("the reference's refuse_headers does not name %s (%s)", name, rule)
			}
			if !strings.Contains(string(guide), "`"+name+"`") {
				t.Errorf("%s does not name %s (%s)", guideFile, name, rule)
			}
		}
	}
	trust := row("trust_forwarded_headers")
	_, list, ok := strings.Cut(trust, "one of ")
	if !ok {
		t.Fatalf("trust_forwarded_headers lists no values: %s", trust)
	}
	var got []string
	for _, m := range regexp.MustCompile("`([a-z-]+)`").FindAllStringSubmatch(list, -1) {
		got = append(got, m[1])
	}
	if want := policy.ForwardedHeaders(); !slices.Equal(got, want) {
		t.Errorf("trust_forwarded_headers may name %q; package policy removes %q", got, want)
	}
	for _, name := range policy.ForwardedHeaders() {
		if !strings.Contains(string(guide), "`"+name+"`") {
			t.Errorf("%s does not name %s", guideFile, name)
		}
	}
}
