package envoytest

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

func TestApplyQuery(t *testing.T) {
	set := func(k, v string) []*corev3.QueryParameter { return []*corev3.QueryParameter{{Key: k, Value: v}} }
	cases := []struct {
		path   string
		set    []*corev3.QueryParameter
		remove []string
		want   string
	}{
		{"/a?z=1&y=%20", nil, nil, "/a?z=1&y=%20"}, // untouched: exactly as sent
		{"/a?z=1&y=2&z=3", nil, []string{"z"}, "/a?y=2"},
		{"/a?z=1&y=2", nil, []string{"missing"}, "/a?y=2&z=1"}, // rewritten in key order
		{"/a?only=1", nil, []string{"only"}, "/a"},
		{"/a?flag&b=1", nil, []string{"b"}, "/a?flag="},
		{"/a?b=1", set("a", "x"), nil, "/a?a=x&b=1"},
		{"/a?a=1&a=2", set("a", "x"), nil, "/a?a=x"},
		{"/a", set("a", "x"), []string{"a"}, "/a"},
	}
	for _, c := range cases {
		if got := applyQuery(c.path, c.set, c.remove); got != c.want {
			t.Errorf("applyQuery(%q, %v, %v) = %q, want %q", c.path, c.set, c.remove, got, c.want)
		}
	}
}
