package accesstoken

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"time"
)

// maxNumericDate is the last second of the year 9999: later dates are refused as malformed, so
// that no arithmetic on them overflows.
const maxNumericDate = 253402300799

// claims checks the verified claims at now and returns the token's identity and scopes, and
// the time before which the token is not valid (the later of nbf and iat, zero without either).
func (v *Validator) claims(p *parsed, iss *Issuer, now time.Time) (Token, time.Time, error) {
	c := p.claims
	var notBefore time.Time
	exp, ok, err := numericDate(c, "exp")
	switch {
	case err != nil:
		return Token{}, notBefore, err
	case !ok:
		return Token{}, notBefore, refuse(ReasonMalformed, "the token has no exp: tokens without an expiry are refused")
	case !now.Before(exp.Add(iss.Skew)):
		return Token{}, notBefore, refuse(ReasonExpired, "the token expired at "+exp.UTC().Format(time.RFC3339))
	}
	if nbf, ok, err := numericDate(c, "nbf"); err != nil {
		return Token{}, notBefore, err
	} else if ok {
		if now.Add(iss.Skew).Before(nbf) {
			return Token{}, notBefore, refuse(ReasonNotYetValid, "the token is not valid before "+nbf.UTC().Format(time.RFC3339))
		}
		notBefore = nbf
	}
	if iat, ok, err := numericDate(c, "iat"); err != nil {
		return Token{}, notBefore, err
	} else if ok {
		if now.Add(iss.Skew).Before(iat) {
			return Token{}, notBefore, refuse(ReasonNotYetValid, "the token was issued in the future, at "+iat.UTC().Format(time.RFC3339))
		}
		if iat.After(notBefore) {
			notBefore = iat
		}
	}
	auds, err := v.audience(c["aud"])
	if err != nil {
		return Token{}, notBefore, err
	}
	sub, ok := c[iss.SubjectClaim].(string)
	if !ok || sub == "" {
		return Token{}, notBefore, refuse(ReasonSubject, "the token's "+iss.SubjectClaim+" claim is not a string")
	}
	scopes, err := scopeList(c[iss.ScopeClaim], iss.ScopeClaim)
	if err != nil {
		return Token{}, notBefore, err
	}
	return Token{Issuer: iss, Subject: sub, Scopes: scopes, Expiry: exp, Audiences: auds}, notBefore, nil
}

// audience checks that aud, a string or a list of strings, names this resource, and returns the
// resource's audiences it names (the validator's own strings, in its order).
func (v *Validator) audience(aud any) ([]string, error) {
	var named []string
	switch aud := aud.(type) {
	case string:
		for _, want := range v.audiences {
			if aud == want {
				named = append(named, want)
			}
		}
	case []any:
		for _, a := range aud {
			if _, ok := a.(string); !ok {
				return nil, refuse(ReasonMalformed, "the token's aud lists a value that is not a string")
			}
		}
		for _, want := range v.audiences {
			for _, a := range aud {
				if a.(string) == want {
					named = append(named, want)
					break
				}
			}
		}
	case nil:
		return nil, refuse(ReasonAudience, "the token names no audience")
	default:
		return nil, refuse(ReasonMalformed, "the token's aud is neither a string nor a list of strings")
	}
	if len(named) == 0 {
		return nil, refuse(ReasonAudience, "the token is for another audience")
	}
	return named, nil
}

// numericDate reads a NumericDate claim (RFC 7519 §2: seconds since the epoch, fractions
// allowed). ok is false when the claim is absent.
func numericDate(c map[string]any, name string) (t time.Time, ok bool, err error) {
	v, present := c[name]
	if !present {
		return time.Time{}, false, nil
	}
	n, isNum := v.(json.Number)
	if !isNum {
		return time.Time{}, false, refuse(ReasonMalformed, "the token's "+name+" is not a number")
	}
	f, perr := strconv.ParseFloat(string(n), 64)
	if perr != nil || math.IsNaN(f) || f < 0 || f > maxNumericDate {
		return time.Time{}, false, refuse(ReasonMalformed, "the token's "+name+" is not a date")
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, nil
}

// scopeList reads the scope claim: a space-separated string of scope tokens (RFC 6749 §3.3, RFC
// 9068) or a list of scope tokens; absent, no scopes.
func scopeList(v any, claim string) ([]string, error) {
	bad := func() error { return refuse(ReasonScope, "the token's "+claim+" claim is not a list of scopes") }
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		var out []string
		for _, s := range strings.Split(v, " ") {
			if s == "" {
				continue
			}
			if !isScopeToken(s) {
				return nil, bad()
			}
			out = append(out, s)
		}
		return out, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, x := range v {
			s, ok := x.(string)
			if !ok || !isScopeToken(s) {
				return nil, bad()
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, bad()
}

// isScopeToken reports whether s is a scope-token: 1*( %x21 / %x23-5B / %x5D-7E ).
func isScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
