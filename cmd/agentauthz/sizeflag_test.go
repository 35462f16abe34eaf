package main

import "testing"

func TestSizeFlag(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "1500": 1500, "10K": 10 << 10, "100MiB": 100 << 20, "100mb": 100 << 20, "2G": 2 << 30, "7B": 7, " 3 KiB ": 3 << 10} {
		var s sizeFlag
		if err := s.Set(in); err != nil || int64(s) != want {
			t.Errorf("Set(%q) = %d, %v; want %d", in, s, err, want)
		}
	}
	for _, in := range []string{"", "M", "1.5M", "-1", "10T", "10IB", "99999999999G"} {
		var s sizeFlag
		if err := s.Set(in); err == nil {
			t.Errorf("Set(%q) = %d", in, s)
		}
	}
}
