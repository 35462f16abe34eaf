package authzen

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/agentauthz/agentauthz/policy/strictjson"
)

// Limits on one AuthZEN request. A larger request is refused before anything is evaluated.
const (
	// MaxRequestBytes bounds the request body: a batch of evaluations with the bodies of the HTTP
	// requests they describe.
	MaxRequestBytes = 4 << 20
	// MaxEvaluations bounds the evaluations array of one Access Evaluations request.
	MaxEvaluations = 100
	// maxDepth bounds JSON nesting; the HTTP body is a string, so it does not count.
	maxDepth = 32
)

// Semantic is an Access Evaluations request's options.evaluations_semantic.
type Semantic string

// The three evaluation semantics of the specification.
const (
	ExecuteAll          Semantic = "execute_all"
	DenyOnFirstDeny     Semantic = "deny_on_first_deny"
	PermitOnFirstPermit Semantic = "permit_on_first_permit"
)

// entity is a Subject or a Resource as read: type, id and properties. An HTTP request's
// properties are ignored (the policy decides from the request itself); an MCP tool's name its
// server and arguments.
type entity struct {
	typ, id string
	// props are the entity's properties, when it has any: an MCP tool's server and arguments.
	props map[string]any
}

// evaluation is one access evaluation request, with defaults applied.
type evaluation struct {
	subject, resource entity
	action            string
	// context is the evaluation's context object; nil when there is none.
	context map[string]any
}

// item is one member of an evaluations array: an evaluation, or why it cannot be one.
type item struct {
	ev  evaluation
	err *itemError
}

// itemError is a failure of one evaluation in a batch, answered in its place as a deny with the
// error in its context.
type itemError struct {
	status  int
	message string
}

// request is an Access Evaluation(s) request as read.
type request struct {
	// batch is set when an evaluations array with members was sent to the evaluations endpoint;
	// otherwise single is the one evaluation.
	batch    bool
	single   evaluation
	items    []item
	semantic Semantic
}

// badRequest is a request the PDP refuses as a whole, with 400 and the message.
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }

func bad(format string, args ...any) error { return &badRequest{fmt.Sprintf(format, args...)} }

// readRequest reads an AuthZEN request body: strict JSON (one object, no duplicate member names,
// valid UTF-8), unknown members ignored. batch says it was sent to the evaluations endpoint.
// Every problem with the payload as a whole is a *badRequest; a problem with one member of an
// evaluations array is that item's error.
func readRequest(data []byte, batch bool) (*request, error) {
	v, err := strictjson.Parse(data, maxDepth)
	if err != nil {
		var se *strictjson.Error
		if errors.As(err, &se) {
			where := ""
			if se.Pointer != "" {
				where = " at " + se.Pointer
			}
			return nil, bad("the request body is not strict JSON%s: %s", where, se.Message)
		}
		return nil, bad("the request body is not JSON")
	}
	top, ok := v.(map[string]any)
	if !ok {
		return nil, bad("the request body must be a JSON object")
	}
	var defaults partial
	if err := defaults.read(top, ""); err != nil {
		return nil, &badRequest{err.Error()}
	}
	req := &request{semantic: ExecuteAll}
	if batch {
		if err := readOptions(top, req); err != nil {
			return nil, err
		}
		if raw, ok := top["evaluations"]; ok {
			arr, ok := raw.([]any)
			if !ok {
				return nil, bad("evaluations must be an array")
			}
			if len(arr) > MaxEvaluations {
				return nil, bad("evaluations has %d members; send at most %d per request", len(arr), MaxEvaluations)
			}
			if len(arr) > 0 {
				req.batch = true
				req.items = make([]item, len(arr))
				for i, raw := range arr {
					req.items[i] = readItem(raw, &defaults, "evaluations["+strconv.Itoa(i)+"]")
				}
				return req, nil
			}
		}
	}
	// A single evaluation, or an evaluations request without evaluations, which the
	// specification answers as one.
	ev, err := defaults.complete("")
	if err != nil {
		return nil, &badRequest{err.Error()}
	}
	req.single = ev
	return req, nil
}

func readOptions(top map[string]any, req *request) error {
	raw, ok := top["options"]
	if !ok {
		return nil
	}
	opts, ok := raw.(map[string]any)
	if !ok {
		return bad("options must be an object")
	}
	raw, ok = opts["evaluations_semantic"]
	if !ok {
		return nil
	}
	s, _ := raw.(string)
	switch Semantic(s) {
	case ExecuteAll, DenyOnFirstDeny, PermitOnFirstPermit:
		req.semantic = Semantic(s)
		return nil
	}
	return bad("options.evaluations_semantic must be one of %s, %s or %s", ExecuteAll, DenyOnFirstDeny, PermitOnFirstPermit)
}

// readItem reads one member of an evaluations array over the request's defaults: a key the
// member has replaces the default whole; a key it lacks is the default.
func readItem(raw any, defaults *partial, path string) item {
	m, ok := raw.(map[string]any)
	if !ok {
		return item{err: &itemError{400, path + " must be an object"}}
	}
	p := *defaults
	if err := p.read(m, path+"."); err != nil {
		return item{err: &itemError{400, err.Error()}}
	}
	ev, err := p.complete(path + ".")
	if err != nil {
		return item{err: &itemError{400, err.Error()}}
	}
	return item{ev: ev}
}

// partial is an evaluation whose parts may be missing: the top level of a request, or the
// defaults merged with one member of an evaluations array.
type partial struct {
	subject, resource *entity
	action            *string
	context           map[string]any
}

// read sets each part m has, replacing what p held.
func (p *partial) read(m map[string]any, path string) error {
	if raw, ok := m["subject"]; ok {
		e, err := readEntity(raw, path+"subject")
		if err != nil {
			return err
		}
		p.subject = &e
	}
	if raw, ok := m["resource"]; ok {
		e, err := readEntity(raw, path+"resource")
		if err != nil {
			return err
		}
		p.resource = &e
	}
	if raw, ok := m["action"]; ok {
		a, ok := raw.(map[string]any)
		if !ok {
			return fmt.Errorf("%saction must be an object", path)
		}
		name, err := requiredString(a, "name", path+"action")
		if err != nil {
			return err
		}
		if err := optionalObject(a, "properties", path+"action"); err != nil {
			return err
		}
		p.action = &name
	}
	if raw, ok := m["context"]; ok {
		c, ok := raw.(map[string]any)
		if !ok {
			return fmt.Errorf("%scontext must be an object", path)
		}
		p.context = c
	}
	return nil
}

// complete returns the evaluation p describes, or which required part is missing.
func (p *partial) complete(path string) (evaluation, error) {
	for _, part := range [...]struct {
		name    string
		present bool
	}{{"subject", p.subject != nil}, {"action", p.action != nil}, {"resource", p.resource != nil}} {
		if !part.present {
			if path == "" {
				return evaluation{}, fmt.Errorf("%s is required", part.name)
			}
			return evaluation{}, fmt.Errorf("%s%s is required: the evaluation has none and the request gives no default", path, part.name)
		}
	}
	return evaluation{subject: *p.subject, action: *p.action, resource: *p.resource, context: p.context}, nil
}

func readEntity(raw any, path string) (entity, error) {
	m, ok := raw.(map[string]any)
	if !ok {
		return entity{}, fmt.Errorf("%s must be an object", path)
	}
	typ, err := requiredString(m, "type", path)
	if err != nil {
		return entity{}, err
	}
	id, err := requiredString(m, "id", path)
	if err != nil {
		return entity{}, err
	}
	if err := optionalObject(m, "properties", path); err != nil {
		return entity{}, err
	}
	props, _ := m["properties"].(map[string]any)
	return entity{typ: typ, id: id, props: props}, nil
}

func requiredString(m map[string]any, key, path string) (string, error) {
	raw, ok := m[key]
	if !ok {
		return "", fmt.Errorf("%s.%s is required", path, key)
	}
	s, ok := raw.(string)
	if !ok {
		return "", fmt.Errorf("%s.%s must be a string", path, key)
	}
	return s, nil
}

func optionalObject(m map[string]any, key, path string) error {
	raw, ok := m[key]
	if !ok {
		return nil
	}
	if _, ok := raw.(map[string]any); !ok {
		return fmt.Errorf("%s.%s must be an object", path, key)
	}
	return nil
}
