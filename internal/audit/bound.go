package audit

import (
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"strconv"
	"unicode/utf8"
)

// oversizeKey holds, in a record shortened to fit MaxRecord, the length and SHA-256 of the
// record it stands for.
const oversizeKey = "oversize"

// oversizeField is how long a string field of a shortened record may be.
const oversizeField = 256

// bound returns s, or, if it is longer than limit bytes, its start followed by a marker giving its
// length and SHA-256: "…[truncated: 123456 bytes, sha256:<64 hex>]", limit bytes in all. The cut
// falls between characters.
func bound(s string, limit int) (string, bool) {
	if len(s) <= limit {
		return s, false
	}
	sum := sha256.Sum256([]byte(s))
	marker := "…[truncated: " + strconv.Itoa(len(s)) + " bytes, sha256:" + hex.EncodeToString(sum[:]) + "]"
	keep := limit - len(marker)
	for keep > 0 && !utf8.RuneStart(s[keep]) {
		keep--
	}
	return s[:max(keep, 0)] + marker, true
}

// boundAttrs returns attrs with every string value, in groups too, bound to MaxField, telling
// the observer of each one cut. It copies only what it changes.
func (l *Log) boundAttrs(kind string, attrs []slog.Attr) []slog.Attr {
	var out []slog.Attr
	for i, a := range attrs {
		b, changed := l.boundAttr(kind, a)
		if changed && out == nil {
			out = append(make([]slog.Attr, 0, len(attrs)), attrs[:i]...)
		}
		if out != nil {
			out = append(out, b)
		}
	}
	if out == nil {
		return attrs
	}
	return out
}

func (l *Log) boundAttr(kind string, a slog.Attr) (slog.Attr, bool) {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		s, cut := bound(v.String(), MaxField)
		if !cut {
			return a, false
		}
		if l.obs != nil {
			l.obs.Truncated(kind, a.Key)
		}
		return slog.String(a.Key, s), true
	case slog.KindGroup:
		g := v.Group()
		b := l.boundAttrs(kind, g)
		if len(g) == 0 || &b[0] == &g[0] {
			return a, false
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(b...)}, true
	}
	return a, false
}

// oversize is what a record too long for MaxRecord is written as: its top-level strings (cut to
// oversizeField) and scalars, and the length and SHA-256 of the whole record.
func oversize(attrs []slog.Attr, size int, sum [sha256.Size]byte) []slog.Attr {
	out := make([]slog.Attr, 0, len(attrs)+1)
	for _, a := range attrs {
		v := a.Value.Resolve()
		switch v.Kind() {
		case slog.KindString:
			s, _ := bound(v.String(), oversizeField)
			out = append(out, slog.String(a.Key, s))
		case slog.KindInt64, slog.KindUint64, slog.KindFloat64, slog.KindBool, slog.KindDuration, slog.KindTime:
			out = append(out, slog.Attr{Key: a.Key, Value: v})
		}
	}
	return append(out, slog.Group(oversizeKey, slog.Int("bytes", size), slog.String("sha256", hex.EncodeToString(sum[:]))))
}
