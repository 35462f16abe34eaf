package target_test

import (
	"testing"

	"github.com/agentauthz/agentauthz/policy/target"
)

func TestEqualFoldASCII(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"api.example.org", "API.Example.ORG", true},
		{"limit", "limit", true},
		{"", "", true},
		{"kind", "\u212aind", false}, // the Kelvin sign folds to k in Unicode, never here
		{"sort", "\u017fort", false}, // the long s folds to s in Unicode
		{"a", "ab", false},
		{"@", "`", false}, // the bytes around A–Z and a–z do not fold
		{"[", "{", false},
		{"é", "É", false}, // non-ASCII letters are compared as they are
	} {
		if got := target.EqualFoldASCII(c.a, c.b); got != c.want {
			t.Errorf("EqualFoldASCII(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
		if got := target.EqualFoldASCII(c.b, c.a); got != c.want {
			t.Errorf("EqualFoldASCII(%q, %q) = %v, want %v", c.b, c.a, got, c.want)
		}
	}
}
