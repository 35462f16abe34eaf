package policy

import (
	"slices"
	"testing"
)

// TestQueryParams: a route's query table finds exactly the declared names, numbers them in
// the order they were declared, and folds ASCII case only.
func TestQueryParams(t *testing.T) {
	var q queryParams
	limit, page, kind := &param{name: "limit"}, &param{name: "page"}, &param{name: "kind"}
	q.add("page", page)
	q.add("limit", limit)
	q.add("kind", kind)
	if page.index != 0 || limit.index != 1 || kind.index != 2 {
		t.Errorf("indexes = %d %d %d, want 0 1 2", page.index, limit.index, kind.index)
	}
	for name, want := range map[string]*param{"page": page, "limit": limit, "kind": kind, "Page": nil, "pag": nil, "": nil, "limit ": nil} {
		if got := q.get(name); got != want {
			t.Errorf("get(%q) = %v, want %v", name, got, want)
		}
	}
	for name, want := range map[string]bool{"page": true, "PAGE": true, "LiMiT": true, "kind": true,
		"\u212aind": false, // the Kelvin sign folds to k in Unicode, never here
		"pages":     false, "": false, "lim1t": false} {
		if got := q.declaredFold(name); got != want {
			t.Errorf("declaredFold(%q) = %v, want %v", name, got, want)
		}
	}
	if got := q.sortedNames(); !slices.Equal(got, []string{"kind", "limit", "page"}) {
		t.Errorf("sortedNames = %v", got)
	}
	var none queryParams
	if none.get("page") != nil || none.declaredFold("page") || len(none.sortedNames()) != 0 {
		t.Error("an empty table finds something")
	}
}
