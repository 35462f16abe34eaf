package strictjson_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/agentauthz/agentauthz/policy/strictjson"
)

// TestPointer: pointers are parsed as RFC 6901 writes them, and Replace changes a copy, never
// the value it is given.
func TestPointer(t *testing.T) {
	const body = `{"a":{"b":[1,{"c":2}],"x/y":3,"t~":4,"":5,"01":6},"k":[7,8]}`
	for _, tc := range []struct {
		ptr, want string
	}{
		{"", `"R"`},
		{"/a/b/1/c", `{"a":{"b":[1,{"c":"R"}],"x/y":3,"t~":4,"":5,"01":6},"k":[7,8]}`},
		{"/a/b/0", `{"a":{"b":["R",{"c":2}],"x/y":3,"t~":4,"":5,"01":6},"k":[7,8]}`},
		{"/a/x~1y", `{"a":{"b":[1,{"c":2}],"x/y":"R","t~":4,"":5,"01":6},"k":[7,8]}`},
		{"/a/t~0", `{"a":{"b":[1,{"c":2}],"x/y":3,"t~":"R","":5,"01":6},"k":[7,8]}`},
		{"/a/", `{"a":{"b":[1,{"c":2}],"x/y":3,"t~":4,"":"R","01":6},"k":[7,8]}`},
		{"/a/01", `{"a":{"b":[1,{"c":2}],"x/y":3,"t~":4,"":5,"01":"R"},"k":[7,8]}`},
		{"/k/1", `{"a":{"b":[1,{"c":2}],"x/y":3,"t~":4,"":5,"01":6},"k":[7,"R"]}`},
		// Nothing there: the value as it is.
		{"/k/01", body}, {"/k/2", body}, {"/k/-", body}, {"/k/-1", body}, {"/k/+1", body},
		{"/k/99999999999999999999", body}, {"/missing", body}, {"/a/b/1/c/d", body}, {"/a/x~1y/z", body},
	} {
		p, err := strictjson.ParsePointer(tc.ptr)
		if err != nil {
			t.Errorf("ParsePointer(%q): %v", tc.ptr, err)
			continue
		}
		if p.String() != tc.ptr {
			t.Errorf("ParsePointer(%q).String() = %q", tc.ptr, p.String())
		}
		v, err := strictjson.ParseShared([]byte(body), 0)
		if err != nil {
			t.Fatal(err)
		}
		orig, _ := strictjson.Parse([]byte(body), 0)
		got := p.Replace(v, "R")
		if !reflect.DeepEqual(v, orig) {
			t.Errorf("%q: Replace modified the value it was given: %#v", tc.ptr, v)
		}
		want, _ := strictjson.Parse([]byte(tc.want), 0)
		if !reflect.DeepEqual(got, want) {
			g, _ := json.Marshal(got)
			t.Errorf("%q: Replace = %s, want %s", tc.ptr, g, tc.want)
		}
	}
	for _, bad := range []string{"a", "a/b", "/~", "/a~", "/~2", "/a/~x/b", "#/a"} {
		if p, err := strictjson.ParsePointer(bad); err == nil {
			t.Errorf("ParsePointer(%q) = %q, want an error", bad, p)
		}
	}
}
