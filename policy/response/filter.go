package response

import (
	"errors"
	"fmt"
	"mime"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/agentauthz/agentauthz/policy/strictjson"
)

// Input is one upstream response, as it arrives.
type Input struct {
	// Status is the HTTP status.
	Status int
	// ContentType and ContentEncoding are the response's headers; a header sent more than once
	// is its values joined by ",", which no check accepts.
	ContentType, ContentEncoding string
	// Body is the whole body. It is never modified.
	Body []byte
}

// Outcome says what Filter did.
type Outcome string

const (
	// Passed: the body is sent as it came (nothing to remove, or no body).
	Passed Outcome = "passed"
	// Reduced: members were removed or masked; the reduced body is sent.
	Reduced Outcome = "reduced"
	// Withheld: an error status's body, which the rule does not describe, is replaced by a
	// problem of the same status.
	Withheld Outcome = "withheld"
	// Refused: the body cannot be shown (unreadable, encoded, too large, of another type, or
	// not fitting a rule that refuses); the agent gets 502.
	Refused Outcome = "refused"
)

// Result is what to send the agent.
type Result struct {
	// Body is the body to send: the received body itself when nothing changed (or the rule is
	// in shadow). Nil when Outcome is Withheld or Refused: the caller sends its problem.
	Body []byte
	// Changed reports whether Body differs from the received body.
	Changed bool
	Outcome Outcome
	// Removed and Masked are the JSON pointers of what was (or, in shadow, would have been)
	// removed and masked, "*" for every array element; Truncated counts those not listed.
	Removed, Masked []string
	Truncated       int
	// Reason says why the body was refused or withheld.
	Reason string
	// Shadow: the rule only reports; Body is the received body and Outcome what would have
	// been done.
	Shadow bool
}

// Media types a rule reads.
const (
	contentTypeJSON = "application/json"
	contentTypeSSE  = "text/event-stream"
)

// Filter returns the view of in that the rule lets the agent see. See docs/responses.md for
// which responses a rule applies to and how it fails closed.
func (r *Rule) Filter(in Input) Result {
	res := r.filter(in)
	if r.shadow {
		res.Shadow = true
		res.Body, res.Changed = in.Body, false
	}
	return res
}

func (r *Rule) filter(in Input) Result {
	switch {
	case len(in.Body) > r.maxBytes:
		return refused(fmt.Sprintf("the body is larger than the rule's %d bytes", r.maxBytes))
	case in.Status < 200 || in.Status > 599:
		return refused(fmt.Sprintf("the status %d is not a final HTTP status", in.Status))
	case len(in.Body) == 0:
		return Result{Body: in.Body, Outcome: Passed} // nothing to read
	case in.Status > 299:
		// An error body is not what the rule describes: rather than guess what of it may
		// pass, the agent gets the status alone.
		return Result{Outcome: Withheld, Reason: fmt.Sprintf("the body of a %d response is withheld", in.Status)}
	}
	if enc := strings.TrimSpace(in.ContentEncoding); enc != "" && !strings.EqualFold(enc, "identity") {
		return refused("the body is encoded (" + quote(in.ContentEncoding) + "): decompress it before the ext_proc filter")
	}
	rep := &report{}
	var out []byte
	var changed bool
	var reason string
	switch mt := mediaType(in.ContentType); {
	case r.mcp && mt == contentTypeJSON:
		out, changed, reason = r.message(in.Body, rep, false)
	case r.mcp && mt == contentTypeSSE:
		out, changed, reason = r.stream(in.Body, rep)
	case !r.mcp && (mt == contentTypeJSON || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json")):
		out, changed, reason = r.value(in.Body, rep)
	default:
		return refused("the content type " + quote(in.ContentType) + " is not one the rule reads")
	}
	res := Result{Removed: rep.removed, Masked: rep.masked, Truncated: rep.more}
	switch {
	case reason != "":
		res.Outcome, res.Reason = Refused, reason
	case rep.mismatch && !r.reduce:
		res.Outcome, res.Reason = Refused, "the body holds members the rule does not allow (on_mismatch: refuse)"
	case changed:
		res.Body, res.Changed, res.Outcome = out, true, Reduced
	default:
		res.Body, res.Outcome = in.Body, Passed
	}
	return res
}

func refused(reason string) Result { return Result{Outcome: Refused, Reason: reason} }

// value filters one JSON value: the whole body, structured content, or a text item's JSON. A
// reason is returned when it cannot be shown.
func (r *Rule) value(data []byte, rep *report) (out []byte, changed bool, reason string) {
	if err := checkStrict(data); err != nil {
		return nil, false, "the body is not strict JSON (" + err.Error() + ")"
	}
	if c := (&strictjson.Cursor{Data: data}); !fits(r.keep, c.Next()) {
		return nil, false, "the body is not the kind of JSON value the rule describes"
	}
	var ok bool
	if r.schema == nil {
		out, changed, ok = view(data, r.keep, r.redact, rep)
		if !ok {
			return nil, false, walkFailed(rep)
		}
		return out, changed, ""
	}
	// A schema: remove what it does not declare, check the rest, then redact.
	out, changed, ok = view(data, r.keep, nil, rep)
	if !ok {
		return nil, false, walkFailed(rep)
	}
	v, err := strictjson.ParseShared(out, MaxDepth)
	if err != nil {
		return nil, false, "the reduced body is not strict JSON (" + err.Error() + ")"
	}
	if err := r.schema.Validate(v); err != nil {
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) {
			return nil, false, "the body does not match the response schema at " + quote(firstLocation(ve))
		}
		return nil, false, "the body could not be checked against the response schema"
	}
	if r.redact != nil {
		red, c, ok := view(out, everything, r.redact, rep)
		if !ok {
			return nil, false, "the body could not be walked"
		}
		out, changed = red, changed || c
	}
	return out, changed, ""
}

// firstLocation is where the first leaf error of a validation is, as a JSON pointer.
func firstLocation(ve *jsonschema.ValidationError) string {
	for len(ve.Causes) > 0 {
		ve = ve.Causes[0]
	}
	loc := "/" + strings.Join(ve.InstanceLocation, "/")
	if len(ve.InstanceLocation) == 0 {
		loc = ""
	}
	return loc
}

// mediaType returns a content type's media type, lower case, when its only parameter is at
// most a charset of UTF-8; otherwise "".
func mediaType(ct string) string {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return ""
	}
	for name, value := range params {
		if name != "charset" || !strings.EqualFold(value, "utf-8") {
			return ""
		}
	}
	return mt
}

// quote quotes s for a Reason, cut to a readable length.
func quote(s string) string {
	const limit = 64
	if len(s) > limit {
		s = s[:limit] + "..."
	}
	return strconv.Quote(strings.ToValidUTF8(s, "\uFFFD"))
}

// walkFailed says why a walk of strict JSON failed: nesting past MaxDepth, or what strict JSON
// never makes it do.
func walkFailed(rep *report) string {
	if rep.tooDeep {
		return "the body is not strict JSON (nested deeper than " + strconv.Itoa(MaxDepth) + ")"
	}
	return "the body could not be walked"
}
