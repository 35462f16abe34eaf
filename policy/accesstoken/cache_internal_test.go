package accesstoken

import (
	"strconv"
	"testing"
	"time"
)

func TestVerifiedIsBounded(t *testing.T) {
	var c verified
	for i := range 3 * MaxVerified {
		c.remember("token-"+strconv.Itoa(i), Token{}, time.Time{}, "k", nil)
		if n := len(c.entries); n > MaxVerified {
			t.Fatalf("%d tokens remembered, more than %d", n, MaxVerified)
		}
	}
}
