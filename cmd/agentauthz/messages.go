package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The decoders' errors name Go types ("field pth not found in type extauthz.HTTPRequest",
// "cannot unmarshal array into Go value of type map[string]interface {}"); a user wrote YAML or
// JSON, and is told about it in those words.

var (
	yamlUnknownField = regexp.MustCompile(`^(line \d+: )?field (\S+) not found in type \S+$`)
	yamlWrongKind    = regexp.MustCompile("^(line \\d+: )?cannot unmarshal !!(\\w+)(?: `[^`]*`)? into (.+)$")

	// The same, inside a longer message that a package below wrote, whose list of errors may
	// start with the decoder's heading, joined into one line.
	decodeErrorsHead = regexp.MustCompile(`unmarshal errors:(?:;|\n)\s*`)
	inUnknownField   = regexp.MustCompile(`field (\S+) not found in type [\w.*\[\]]+`)
	inWrongKind      = regexp.MustCompile("cannot unmarshal !!(\\w+)(?: `[^`]*`)? into ([\\w.*\\[\\]{} ]+?)(;|$|\n)")
)

// plainDecodeErrors rewrites the YAML decoder's words for Go types in msg, an error a package
// below wrote around them, into the words of the file the user wrote.
func plainDecodeErrors(msg string) string {
	msg = decodeErrorsHead.ReplaceAllString(msg, "")
	msg = inUnknownField.ReplaceAllString(msg, `unknown key "$1"`)
	msg = inWrongKind.ReplaceAllStringFunc(msg, func(s string) string {
		m := inWrongKind.FindStringSubmatch(s)
		return "want " + goKind(strings.TrimSpace(m[2])) + ", not " + yamlKind(m[1]) + m[3]
	})
	return strings.ReplaceAll(msg, ";   ", "; ")
}

// yamlProblem says what is wrong with a YAML document decoded into a Go value whose keys are
// fields, in one line.
func yamlProblem(err error, fields []string) string {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return strings.TrimPrefix(joinLines(err.Error()), "yaml: ")
	}
	var out []string
	for _, e := range te.Errors {
		if m := yamlUnknownField.FindStringSubmatch(e); m != nil {
			msg := fmt.Sprintf("%sunknown key %q", m[1], m[2])
			if len(fields) > 0 {
				msg += " (known: " + strings.Join(fields, ", ") + ")"
			}
			out = append(out, msg)
			continue
		}
		if m := yamlWrongKind.FindStringSubmatch(e); m != nil {
			out = append(out, fmt.Sprintf("%swant %s, not %s", m[1], goKind(m[3]), yamlKind(m[2])))
			continue
		}
		out = append(out, e)
	}
	return strings.Join(out, "; ")
}

// jsonProblem says what is wrong with a JSON text decoded into a Go value, in one line.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		msg := fmt.Sprintf("want %s, not %s", goKind(te.Type.String()), jsonKind(te.Value))
		if te.Field != "" {
			msg = te.Field + ": " + msg
		}
		return msg
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("not JSON at byte %d: %s", se.Offset, se.Error())
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

// goKind names the kind of value a Go type holds, as YAML and JSON call it.
func goKind(t string) string {
	t = strings.TrimPrefix(t, "*")
	switch {
	case strings.HasPrefix(t, "map["), strings.Contains(t, "."):
		return "a mapping (an object)"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case t == "string":
		return "a string"
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "a whole number"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case t == "bool":
		return "true or false"
	}
	return "another kind of value"
}

func yamlKind(tag string) string {
	switch tag {
	case "str":
		return "a string"
	case "int":
		return "a whole number"
	case "float":
		return "a number"
	case "bool":
		return "true or false"
	case "seq":
		return "a list"
	case "map":
		return "a mapping"
	case "null":
		return "null"
	}
	return "a " + tag
}

func jsonKind(v string) string {
	switch v {
	case "array":
		return "an array"
	case "object":
		return "an object"
	case "string", "number", "bool":
		if v == "bool" {
			return "true or false"
		}
		return "a " + v
	}
	return v
}
