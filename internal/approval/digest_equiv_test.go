package approval

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/agentauthz/agentauthz/policy/strictjson"
)

// digestV1 is Digest as it was before the gate digested the body the policy had read: it read
// the body three more times (strictjson.Check, a jsontext token pass for exact numbers, and
// jsontext's Value.Canonicalize). It is the oracle of the tests below: the digest of an approval
// must never change, or approvals held before an upgrade would not match their retries.
func digestV1(agent, method, host, path, rule, contentType string, body []byte) string {
	h := sha256.New()
	part := func(b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	part([]byte("agentauthz-approval-v1"))
	part([]byte(agent))
	part([]byte(method))
	part([]byte(strings.ToLower(host)))
	part([]byte(path))
	part([]byte(rule))
	if isJSON(contentType) {
		if canon, err := canonicalJSONV1(body); err == nil {
			part([]byte("json"))
			part(canon)
			return hex.EncodeToString(h.Sum(nil))
		}
	}
	part([]byte("bytes"))
	part(body)
	return hex.EncodeToString(h.Sum(nil))
}

func canonicalJSONV1(body []byte) ([]byte, error) {
	if err := strictjson.Check(body, strictjson.DefaultMaxDepth); err != nil {
		return nil, err
	}
	dec := jsontext.NewDecoder(bytes.NewReader(body))
	for {
		tok, err := dec.ReadToken()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if tok.Kind() == '0' {
			if !exactNumberV1(tok.String()) {
				return nil, errInexact
			}
		}
	}
	v := jsontext.Value(append([]byte(nil), body...))
	if err := v.Canonicalize(); err != nil {
		return nil, err
	}
	return v, nil
}

// exactNumberV1 reports whether the JSON number s has exactly the value of the shortest form of
// its float64, the form RFC 8785 writes.
func exactNumberV1(s string) bool {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) {
		return false
	}
	a, ok1 := decimalV1(s)
	b, ok2 := decimalV1(strconv.FormatFloat(f, 'g', -1, 64))
	return ok1 && ok2 && a == b
}

// decimalValueV1 is the value of a decimal number: sign, significant digits (no leading or
// trailing zeros) and the position of the decimal point. "-12.50e1" and "-125" are both
// {true, "125", 3}.
type decimalValueV1 struct {
	neg    bool
	digits string
	point  int
}

// decimalV1 reads a JSON number's value. ok is false for an exponent too large to matter (the
// number is then not an exact float64 anyway).
func decimalV1(s string) (d decimalValueV1, ok bool) {
	s, d.neg = strings.CutPrefix(s, "-")
	mant, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e := strings.TrimPrefix(s[i+1:], "+")
		if len(e) > 8 {
			return d, false
		}
		var err error
		if exp, err = strconv.Atoi(e); err != nil {
			return d, false
		}
		mant = s[:i]
	}
	intPart, frac, _ := strings.Cut(mant, ".")
	digits := intPart + frac
	point := len(intPart) + exp
	for len(digits) > 0 && digits[0] == '0' {
		digits, point = digits[1:], point-1
	}
	digits = strings.TrimRight(digits, "0")
	if digits == "" {
		return decimalValueV1{neg: d.neg}, true
	}
	d.digits, d.point = digits, point
	return d, true
}

// checkSameDigest checks that the digest of body is today's, whether the gate reads it (Digest)
// or is handed the value the policy read, with its route's depth limit (digest).
func checkSameDigest(t *testing.T, ct string, body []byte) {
	t.Helper()
	const agent, method, host, path, rule = "spiffe://example.test/agent/payer", "POST", "API.example.test", "/v1/transfers?x=1", "transfer"
	want := digestV1(agent, method, host, path, rule, ct, body)
	if got := Digest(agent, method, host, path, rule, ct, body); got != want {
		canon, err := canonicalJSONV1(body)
		mine, err2 := appendCanonical(nil, mustParse(body, 64), 0)
		t.Fatalf("Digest(%s, %q) = %s, before %s\ncanonical before: %s (%v)\ncanonical now:    %s (%v)", ct, body, got, want, canon, err, mine, err2)
	}
	if !isJSON(ct) {
		return
	}
	// The policy reads a body with its route's max_depth, which may be above or below the
	// digest's limit.
	for _, depth := range []int{1, 3, strictjson.DefaultMaxDepth, 64, 256} {
		v, err := strictjson.ParseShared(body, depth)
		if err != nil {
			continue
		}
		if got := digest(agent, method, host, path, rule, body, v, true); got != want {
			t.Fatalf("digest of %q read with max_depth %d = %s, before %s", body, depth, got, want)
		}
	}
}

func mustParse(body []byte, depth int) any {
	v, _ := strictjson.Parse(body, depth)
	return v
}

// digestCorpus are bodies whose canonical form has corners: numbers at and beyond float64's
// precision and range, every exponent form, strings with every kind of escape, names that order
// differently in UTF-16 than in UTF-8, nesting at and beyond the limit, and bodies that are not
// strict JSON.
func digestCorpus() []string {
	corpus := []string{
		`{"amount":1500,"to":"DE89 3704","meta":{"a":[1,2.5,"x"],"b":null}}`,
		`{}`, `[]`, `""`, `0`, `-0`, `-0.0`, `0e10`, `-0E-5`, `true`, `false`, `null`, `"x"`, `[[]]`, `{"":{}}`,
		`9007199254740992`, `9007199254740993`, `-9007199254740993`, `12345678901234567890`, `12345678901234567891`,
		`123456789012345680000`, `1.2345678901234568e20`, `1e21`, `1e+21`, `1E21`, `999999999999999999999`,
		`100000000000000000000`, `1e20`, `0.000001`, `1e-6`, `1e-7`, `0.0000001`, `1.5e-7`, `123e-20`,
		`0.1`, `0.10000000000000001`, `1e-1`, `100`, `1E2`, `1e+2`, `100.000`, `1.000e2`, `-5e-1`, `-0.5`,
		`5e-324`, `4.9406564584124654e-324`, `2e-324`, `1e-400`, `-1e-400`, `1.7976931348623157e308`,
		`1.7976931348623159e308`, `1e308`, `1e309`, `1e400`, `-1e400`, `1e999999999999`, `1e-999999999999`,
		`123456789`, `1234567890123456`, `12345678901234567`, `-123456789012345`, `-1234567890123456`,
		`0.30000000000000004`, `3.0000000000000004e-1`, `299792458`, `6.02214076e23`, `1.602176634e-19`,
		`[1,1.0,1e0,10e-1,0.1e1]`, `{"n":[-1,-1.5,-1e-7,-1e21,-123456789012345680000]}`,
		`"\u00e9"`, `"é"`, `"\ud83d\ude00"`, `"😀"`, `"\u2028\u2029"`, "\"\u2028\"", `"\u0000\u0001\u001f\u007f"`,
		`"\b\f\n\r\t"`, `"\u0008\u000c\u000a\u000d\u0009"`, `"\/\\\""`, `"<>&"`, `"\u003c\u003e\u0026"`,
		`"\uFFFF\uffff\uE000"`, `"a\u0000b"`, "\"\x7f\"", `"\u0041\u00DF\u6771\uD834\uDD1E"`,
		`{"\u0061":1,"b":2}`, `{"a\/b":1}`, `{"\ud83d\ude00":1,"\uffff":2,"\ue000":3,"a":4,"":5,"A":6,"é":7,"\u0000":8}`,
		`{"€":1,"😀":2,"":3,"𝄞":4,"ﬀ":5}`, `{"aa":1,"a":2,"ab":3,"a\u0000":4}`,
		`{"1":1,"10":2,"2":3,"-":4,"~":5,"_":6}`,
		` {"spaced" : [ 1 , 2 ] } `, "\t\r\n[\n1\n]\n",
		// Not strict JSON, or not JSON: digested as bytes.
		``, ` `, `{"a":1,"a":2}`, `{"a":1} {}`, `not json`, `{"a":}`, `[1,]`, `"\ud800"`, `"\udc00x"`, "\"\xff\"",
		`{"a":1`, `01`, `1.`, `.5`, `+1`, `NaN`, `Infinity`, `'x'`, `{"a":1}x`, "\ufeff{}",
	}
	// Nesting at and beyond strictjson.DefaultMaxDepth, and beyond the limits routes may set.
	for _, n := range []int{strictjson.DefaultMaxDepth - 1, strictjson.DefaultMaxDepth, strictjson.DefaultMaxDepth + 1, 64, 65} {
		corpus = append(corpus, strings.Repeat("[", n)+strings.Repeat("]", n))
		corpus = append(corpus, strings.Repeat(`{"a":`, n)+"1"+strings.Repeat("}", n))
		corpus = append(corpus, strings.Repeat(`[{"b":`, n/2)+`[1,2.50,"é"]`+strings.Repeat("}]", n/2))
	}
	return corpus
}

// nameOrders are one object with its duplicate-free names in every order, names that order
// differently by UTF-16 code units than by UTF-8 bytes or code points among them.
func nameOrders() []string {
	var corpus []string
	names := []string{`"b"`, `"\u00e9"`, `"😀"`, `"\uffff"`, `"A"`, `""`}
	for _, order := range permutations(len(names)) {
		var b strings.Builder
		b.WriteString("{")
		for i, j := range order {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, `%s:{"n":%d,"m":[%d.0e0,{"y":1,"x":2}]}`, names[j], j, j)
		}
		b.WriteString("}")
		corpus = append(corpus, b.String())
	}
	return corpus
}

// permutations lists every order of 0..n-1.
func permutations(n int) [][]int {
	if n == 0 {
		return [][]int{{}}
	}
	var out [][]int
	for _, p := range permutations(n - 1) {
		for i := 0; i <= len(p); i++ {
			q := append(append(append([]int(nil), p[:i]...), n-1), p[i:]...)
			out = append(out, q)
		}
	}
	return out
}

// TestDigestUnchanged: the digest of every body of the corpus, and of thousands of generated
// ones, is the one the previous implementation computed, byte for byte.
func TestDigestUnchanged(t *testing.T) {
	for _, body := range append(digestCorpus(), nameOrders()...) {
		for _, ct := range []string{"application/json", "application/merge-patch+json; charset=utf-8", "text/plain"} {
			checkSameDigest(t, ct, []byte(body))
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 5000 {
		checkSameDigest(t, "application/json", []byte(randomJSON(rng, 0)))
	}
}

// FuzzDigestUnchanged: for any body, the digest is the one the previous implementation computed.
func FuzzDigestUnchanged(f *testing.F) {
	for _, body := range digestCorpus() {
		f.Add([]byte(body))
	}
	for i, body := range nameOrders() {
		if i%60 == 0 { // a few: the unit test takes them all
			f.Add([]byte(body))
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkSameDigest(t, "application/json", body)
	})
}

// randomJSON writes a random JSON value, spelled in one of the many ways JSON allows: names in
// random order, escaped or not, numbers with and without fractions and exponents, whitespace.
func randomJSON(rng *rand.Rand, depth int) string {
	ws := func() string {
		return [...]string{"", "", "", " ", "\n  ", "\t"}[rng.IntN(6)]
	}
	kind := rng.IntN(10)
	if depth > 6 && kind >= 7 {
		kind = rng.IntN(7)
	}
	switch kind {
	case 0:
		return [...]string{"true", "false", "null"}[rng.IntN(3)]
	case 1, 2, 3:
		return randomNumber(rng)
	case 4, 5, 6:
		return randomString(rng)
	case 7:
		n := rng.IntN(5)
		var b strings.Builder
		b.WriteString("[" + ws())
		for i := range n {
			if i > 0 {
				b.WriteString("," + ws())
			}
			b.WriteString(randomJSON(rng, depth+1))
		}
		b.WriteString(ws() + "]")
		return b.String()
	default:
		n := rng.IntN(6)
		seen := map[string]bool{}
		var b strings.Builder
		b.WriteString("{" + ws())
		for i := 0; i < n; i++ {
			name := randomName(rng)
			if seen[name] {
				continue
			}
			seen[name] = true
			if i > 0 && len(seen) > 1 {
				b.WriteString("," + ws())
			}
			b.WriteString(quoteSomehow(rng, name) + ws() + ":" + ws() + randomJSON(rng, depth+1))
		}
		b.WriteString(ws() + "}")
		return b.String()
	}
}

func randomNumber(rng *rand.Rand) string {
	switch rng.IntN(8) {
	case 0:
		return strconv.Itoa(rng.IntN(2000) - 1000)
	case 1:
		return strconv.FormatInt(rng.Int64()>>rng.IntN(63), 10)
	case 2:
		// Beyond float64's integers.
		return strconv.FormatUint(rng.Uint64(), 10) + strings.Repeat("0", rng.IntN(25))
	case 3:
		f := rng.NormFloat64() * float64(int64(1)<<rng.IntN(60))
		return strconv.FormatFloat(f, "gfeE"[rng.IntN(4)], -1, 64)
	case 4:
		f := rng.Float64() * 1e-5
		return strconv.FormatFloat(f, 'e', rng.IntN(20)-1, 64)
	case 5:
		// A decimal with many digits: exact or not.
		return fmt.Sprintf("%d.%0*d", rng.IntN(100), rng.IntN(20)+1, rng.Int64N(1e15))
	case 6:
		mant := [...]string{"1", "-1", "0", "12.5", "-0.0", "9.999", "1.0000000000000002"}[rng.IntN(7)]
		return mant + [...]string{"e", "E", "e+", "E-", "e-"}[rng.IntN(5)] + strconv.Itoa(rng.IntN(400))
	default:
		return [...]string{"0", "-0", "1e21", "1e-7", "5e-324", "1.7976931348623157e308", "1e309", "0.1", "100.0"}[rng.IntN(9)]
	}
}

var randomRunes = []rune{'a', 'b', 'A', 'z', '0', ' ', '"', '\\', '/', '<', '>', '&', 0, 1, 0x1f, 0x7f, 'é', 'ß',
	'€', 0x2028, 0x2029, 0xe000, 0xfffd, 0xffff, 0x10000, 0x1d11e, 0x1f600, 0x10ffff, '\b', '\f', '\n', '\r', '\t', '~'}

func randomName(rng *rand.Rand) string {
	n := rng.IntN(4)
	rs := make([]rune, n)
	for i := range rs {
		rs[i] = randomRunes[rng.IntN(len(randomRunes))]
	}
	return string(rs)
}

func randomString(rng *rand.Rand) string {
	return quoteSomehow(rng, randomName(rng)+randomName(rng))
}

// quoteSomehow writes s as a JSON string, each character escaped or not, as JSON allows.
func quoteSomehow(rng *rand.Rand, s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		escape := rng.IntN(3) == 0
		switch {
		case r == '"' || r == '\\':
			b.WriteString(`\` + string(r))
		case r < 0x20 || escape:
			if r > 0xffff {
				r1, r2 := utf16Pair(r)
				fmt.Fprintf(&b, `\u%04x\u%04X`, r1, r2)
			} else if rng.IntN(2) == 0 {
				fmt.Fprintf(&b, `\u%04x`, r)
			} else {
				fmt.Fprintf(&b, `\u%04X`, r)
			}
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func utf16Pair(r rune) (rune, rune) {
	r -= 0x10000
	return 0xd800 + r>>10, 0xdc00 + r&0x3ff
}
