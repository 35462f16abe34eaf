package redact

import (
	"net/url"
	"strings"
	"testing"
)

func TestTarget(t *testing.T) {
	q := NewQuery("token", " api_key ", "sig nature", "")
	for _, tc := range []struct{ in, want string }{
		{"/v1/tickets", "/v1/tickets"},
		{"/v1/tickets?status=open&limit=10", "/v1/tickets?status=open&limit=10"},
		{"/v1/x?token=s3cret", "/v1/x?token=[redacted]"},
		{"/v1/x?a=1&token=s3cret&b=%20two", "/v1/x?a=1&token=[redacted]&b=%20two"},
		{"/v1/x?token=1&token=2&api_key=k", "/v1/x?token=[redacted]&token=[redacted]&api_key=[redacted]"},
		{"/v1/x?token=a=b&c", "/v1/x?token=[redacted]&c"},
		{"/v1/x?token=&token", "/v1/x?token=&token"},
		{"/v1/x?tokens=1&xtoken=2", "/v1/x?tokens=1&xtoken=2"},
		// Case: readers that fold it.
		{"/v1/x?Token=3&TOKEN=4&API_KEY=5", "/v1/x?Token=[redacted]&TOKEN=[redacted]&API_KEY=[redacted]"},
		// ";" separates parameters for some readers.
		{"/v1/x?a=1;token=s", "/v1/x?a=1;token=[redacted]"},
		{"/v1/x?a=1;Token=s&b=2", "/v1/x?a=1;Token=[redacted]&b=2"},
		// A reader that splits at "&" only reads ";b=2" as part of the value: it is hidden too.
		{"/v1/x?token=s;b=2", "/v1/x?token=[redacted]"},
		{"/v1/x?token=;s&b=2", "/v1/x?token=[redacted]&b=2"},
		// Encoded names, once or twice; "+" as a space.
		{"/v1/x?%74oken=s3cret", "/v1/x?%74oken=[redacted]"},
		{"/v1/x?%54OKEN=s3cret", "/v1/x?%54OKEN=[redacted]"},
		{"/v1/x?%2574oken=s3cret", "/v1/x?%2574oken=[redacted]"},
		{"/v1/x?sig+nature=s&sig%20nature=t&SIG+Nature=u", "/v1/x?sig+nature=[redacted]&sig%20nature=[redacted]&SIG+Nature=[redacted]"},
		{"/v1/x?+token+=s&token%20=t", "/v1/x?+token+=[redacted]&token%20=[redacted]"},
		{"/v1/x?token[]=s&token[0]=t", "/v1/x?token[]=[redacted]&token[0]=[redacted]"},
		{"/v1/x?%zz=1&token=s", "/v1/x?%zz=1&token=[redacted]"},
		{"/v1/x?&&token=s&", "/v1/x?&&token=[redacted]&"},
		{"/v1/x?", "/v1/x?"},
		// "#" and "?" start a parameter for some readers; a redacted value runs over them.
		{"/v1/x?token=s#frag", "/v1/x?token=[redacted]"},
		{"/v1/x?token=s#frag&b=1", "/v1/x?token=[redacted]&b=1"},
		{"/v1/x?a=1#token=s", "/v1/x?a=1#token=[redacted]"},
		{"/v1/x?a=1?token=s", "/v1/x?a=1?token=[redacted]"},
		{"/v1/x#token=s", "/v1/x#token=[redacted]"},
		// Path parameters.
		{"/v1/x;token=s/y?b=1", "/v1/x;token=[redacted]/y?b=1"},
		{"/v1/x;jsessionid=1;Token=s?b=1", "/v1/x;jsessionid=1;Token=[redacted]?b=1"},
		{"/v1/x;y/z", "/v1/x;y/z"},
		// A value carrying a URL with a token; an encoded separator in a name or a pair.
		{"/v1/x?next=%2Fcb%3Ftoken%3Ds&b=1", "/v1/x?next=[redacted]&b=1"},
		{"/v1/x?next=%252Fcb%253Ftoken%253Ds", "/v1/x?next=[redacted]"},
		{"/v1/x?next=%2Fcb%3Fstate%3D1", "/v1/x?next=%2Fcb%3Fstate%3D1"},
		{"/v1/x?a%26token%3Ds=1&b=2", "/v1/x?[redacted]&b=2"},
		{"/v1/x?a=1%26token%3Ds", "/v1/x?a=[redacted]"},
		{"/v1/x?a%3D1%26token%3Ds", "/v1/x?[redacted]"},
		// Redacting twice changes nothing.
		{"/v1/x?token=[redacted]", "/v1/x?token=[redacted]"},
	} {
		if got := q.Target(tc.in); got != tc.want {
			t.Errorf("Target(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, none := range []*Query{nil, {}, NewQuery(), NewQuery("", " ")} {
		if got := none.Target("/x?token=s"); got != "/x?token=s" {
			t.Errorf("no names: %q", got)
		}
		if !none.Empty() {
			t.Errorf("%+v is not empty", none)
		}
	}
	if got := NewQuery("Token", "TOKEN").Names(); len(got) != 1 || got[0] != "Token" {
		t.Errorf("Names() = %q", got)
	}
}

// Unicode case folding: a name with the Kelvin sign (U+212A), which strings.EqualFold and
// readers that fold Unicode read as "k", percent-encoded.
func TestTargetUnicodeFold(t *testing.T) {
	q := NewQuery("key")
	if got := q.Target("/x?%E2%84%AAey=s"); got != "/x?%E2%84%AAey=[redacted]" {
		t.Errorf("Kelvin sign: %q", got)
	}
}

// readers are the ways an upstream may read a query: each returns the parameters it sees.
var readers = map[string]func(query string) [][2]string{
	"& only":          func(q string) [][2]string { return split(q, "&") },
	"& and ;":         func(q string) [][2]string { return split(q, "&;") },
	"every separator": func(q string) [][2]string { return split(q, "&;?#") },
	"cut at #": func(q string) [][2]string {
		q, _, _ = strings.Cut(q, "#")
		return split(q, "&;")
	},
	"decode, then split": func(q string) [][2]string {
		d, err := url.QueryUnescape(q)
		if err != nil {
			return nil
		}
		return split(d, "&;")
	},
}

func split(q, seps string) [][2]string {
	var out [][2]string
	for _, pair := range strings.FieldsFunc(q, func(r rune) bool { return strings.ContainsRune(seps, r) }) {
		name, value, _ := strings.Cut(pair, "=")
		out = append(out, [2]string{name, value})
	}
	return out
}

// checkRedacted fails if any reader finds a value of a redacted parameter in out that is not the
// marker.
func checkRedacted(t *testing.T, q *Query, in, out string) {
	t.Helper()
	_, query, ok := strings.Cut(out, "?")
	if !ok {
		return
	}
	for reader, read := range readers {
		for _, p := range read(query) {
			name := p[0]
			for range maxDepth + 1 {
				name = decode(name)
			}
			if q.is(name) && p[1] != "" && p[1] != Marker && !strings.HasPrefix(p[1], Marker) {
				t.Errorf("%q redacted to %q: reader %q finds %q = %q", in, out, reader, p[0], p[1])
			}
		}
	}
}

// A secret given under any spelling of its name never reaches the output, whatever surrounds it.
func TestTargetHidesSecretEverySpelling(t *testing.T) {
	q := NewQuery("token", "api_key")
	const secret = "S3CRETvalue"
	names := []string{"token", "Token", "TOKEN", "tOkEn", "%74oken", "%54oken", "%2574oken", "t%6Fken", "token%20", "+token", "token[]", "API_KEY", "api%5Fkey", "Api_Key"}
	seps := []string{"&", ";"}
	for _, name := range names {
		for _, sep := range seps {
			for _, in := range []string{
				"/x?" + name + "=" + secret,
				"/x?a=1" + sep + name + "=" + secret,
				"/x?a=1" + sep + name + "=" + secret + sep + "b=2",
				"/x?a=1#" + name + "=" + secret,
				"/x?" + name + "=" + secret + "#x" + sep + "b=2",
				"/x;" + name + "=" + secret + "/y",
				"/x?next=" + url.QueryEscape("/cb?"+name+"="+secret),
				"/x?next=" + url.QueryEscape(url.QueryEscape("/cb?a=1"+sep+name+"="+secret)),
				"/x?a" + url.QueryEscape(sep+name+"="+secret),
			} {
				out := q.Target(in)
				if strings.Contains(out, secret) {
					t.Errorf("Target(%q) = %q shows the secret", in, out)
				}
				if again := q.Target(out); again != out {
					t.Errorf("Target is not idempotent on %q: %q, then %q", in, out, again)
				}
				checkRedacted(t, q, in, out)
			}
		}
	}
}

func FuzzTarget(f *testing.F) {
	for _, s := range []string{
		"/v1/x?token=s", "/v1/x?a=1;Token=s&b", "/x?%2574oken=s#t", "/x;token=s/y?z", "/x?next=%2Fcb%3Ftoken%3Ds",
		"/x?a%26token%3Ds=1", "/x?token[]=a&token=&token", "?&;#=%", "/x?t%6fken=%zz",
	} {
		f.Add(s)
	}
	q := NewQuery("token", "api_key")
	f.Fuzz(func(t *testing.T, in string) {
		out := q.Target(in)
		if again := q.Target(out); again != out {
			t.Fatalf("not idempotent: %q → %q → %q", in, out, again)
		}
		checkRedacted(t, q, in, out)
		if !strings.ContainsAny(in, "?;#") && out != in {
			t.Fatalf("a target without parameters changed: %q → %q", in, out)
		}
	})
}

func BenchmarkTarget(b *testing.B) {
	q := NewQuery("token", "api_key")
	for _, in := range []string{"/v1/tickets/4711", "/v1/tickets?status=open&limit=10", "/v1/x?token=s3cret&status=open"} {
		b.Run(in, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				q.Target(in)
			}
		})
	}
}
