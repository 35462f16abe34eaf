package target

// EqualFoldASCII reports whether a and b are equal ignoring ASCII case only. Host names and
// query names are compared this way: Unicode folding would let a look-alike (the Kelvin sign
// for "k", the long s for "s") pass as another name.
func EqualFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
