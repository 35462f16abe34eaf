package main

import (
	"errors"
	"strconv"
	"strings"
)

// sizeFlag is a size in bytes: digits, optionally followed by K, M or G (KiB, MiB, GiB; KB, MB,
// GB are read the same, as powers of 1024).
type sizeFlag int64

func (s *sizeFlag) String() string { return strconv.FormatInt(int64(*s), 10) }

func (s *sizeFlag) Type() string { return "SIZE" }

func (s *sizeFlag) Set(v string) error {
	v = strings.TrimSpace(v)
	digits := strings.TrimRightFunc(v, func(r rune) bool { return r < '0' || r > '9' })
	unit := strings.ToUpper(strings.TrimSpace(v[len(digits):]))
	shift := 0
	switch strings.TrimSuffix(strings.TrimSuffix(unit, "B"), "I") {
	case "":
		if unit != "" && unit != "B" {
			return errors.New("want a size: digits and K, M or G")
		}
	case "K":
		shift = 10
	case "M":
		shift = 20
	case "G":
		shift = 30
	default:
		return errors.New("want a size: digits and K, M or G")
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n < 0 || n > (1<<62)>>shift {
		return errors.New("want a size: digits and K, M or G")
	}
	*s = sizeFlag(n << shift)
	return nil
}
