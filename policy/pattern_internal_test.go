package policy

import "testing"

// A pattern repeated across routes is compiled once per load and shared; a different pattern is
// not; an invalid one is refused as before.
func TestPatternsCompiledOnce(t *testing.T) {
	var pc patternCache
	a, err := pc.compile("[0-9]{1,12}")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pc.compile("[0-9]{1,12}")
	c, _ := pc.compile("[a-z]+")
	if a != b || a == c || len(pc) != 2 {
		t.Errorf("shared %v, distinct %v, %d compiled", a == b, a != c, len(pc))
	}
	if !a.MatchString("4711") || a.MatchString("4711x") || a.MatchString("x4711") {
		t.Error("the shared pattern is not anchored")
	}
	if _, err := pc.compile("[0-9]+)|(.*"); err == nil {
		t.Error("a pattern that is only valid once wrapped was accepted")
	}
}
