package mcpfilter_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/agentauthz/agentauthz/internal/mcpfilter"
	"github.com/agentauthz/agentauthz/policy/strictjson"
)

// fuzzView shows names of even length, and the tools among them whose names start with "t"
// with a schema of its own.
type fuzzView struct{}

const fuzzSchema = `{"type":"object","additionalProperties":false}`

func (fuzzView) Tool(name string) (bool, []byte) {
	if !fuzzVisible(name) {
		return false, nil
	}
	if strings.HasPrefix(name, "t") {
		return true, []byte(fuzzSchema)
	}
	return true, nil
}
func (fuzzView) Resource(uri string) bool                 { return fuzzVisible(uri) }
func (fuzzView) ResourceTemplate(uriTemplate string) bool { return fuzzVisible(uriTemplate) }
func (fuzzView) Prompt(name string) bool                  { return fuzzVisible(name) }

func fuzzVisible(name string) bool { return len(name)%2 == 0 }

var fuzzMethods = []string{"tools/list", "resources/list", "resources/templates/list", "prompts/list"}

// listKeys are each method's list member and entry key.
var listKeys = map[string][2]string{
	"tools/list":               {"tools", "name"},
	"resources/list":           {"resources", "uri"},
	"resources/templates/list": {"resourceTemplates", "uriTemplate"},
	"prompts/list":             {"prompts", "name"},
}

// FuzzFilterJSON checks Filter on application/json bodies:
//
//   - it never panics and never modifies its input;
//   - what it sends is strict JSON, and names no entry the view refuses, read exactly or as a
//     case-insensitive reader (Go's encoding/json) reads it, and a shown tool's schema is the
//     view's;
//   - what it empties is exactly Empty; what it removes the view refuses;
//   - filtering what it sends again sends the same.
//
// Seeds: every file under testdata/seed and the bodies of the table tests.
func FuzzFilterJSON(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, m uint8, body []byte) {
		method := fuzzMethods[int(m)%len(fuzzMethods)]
		res := filterChecked(t, mcpfilter.Response{Method: method, ContentType: "application/json", Body: body})
		checkMessage(t, method, res.Body)
	})
}

// FuzzFilterStream checks Filter on text/event-stream bodies: as FuzzFilterJSON, with every
// event that a reader written from the SSE specification (below) dispatches from what Filter
// sends holding data that is empty or a strict JSON message naming no refused entry.
func FuzzFilterStream(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, m uint8, body []byte) {
		method := fuzzMethods[int(m)%len(fuzzMethods)]
		res := filterChecked(t, mcpfilter.Response{Method: method, ContentType: "text/event-stream", Body: body})
		if res.ContentType == "application/json" {
			checkMessage(t, method, res.Body)
			return
		}
		for _, data := range readEvents(res.Body) {
			if data != "" {
				checkMessage(t, method, []byte(data))
			}
		}
	})
}

func addSeeds(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join("testdata", "seed", "*"))
	if err != nil {
		f.Fatal(err)
	}
	if len(seeds) == 0 {
		f.Fatal("no seeds in testdata/seed")
	}
	for _, name := range seeds {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		for m := range fuzzMethods {
			f.Add(uint8(m), data)
		}
	}
	f.Add(uint8(0), []byte("data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"ab\"},{\"name\":\"abc\"}]}}\r\n\r\n"))
	f.Add(uint8(0), []byte(`{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"tb","inputSchema":{}},{"Name":"x","name":"ab"}]}}`))
}

// filterChecked runs Filter and checks what holds whatever the content type.
func filterChecked(t *testing.T, r mcpfilter.Response) mcpfilter.Result {
	t.Helper()
	orig := slices.Clone(r.Body)
	res := mcpfilter.Filter(r, fuzzView{})
	if !bytes.Equal(r.Body, orig) {
		t.Fatal("Filter modified its input")
	}
	for _, name := range res.Removed {
		if fuzzVisible(name) {
			t.Fatalf("removed %q, which the view shows", name)
		}
	}
	if res.Changed == bytes.Equal(res.Body, r.Body) {
		t.Fatalf("Changed = %v for\n%q\n->\n%q", res.Changed, r.Body, res.Body)
	}
	switch res.Outcome {
	case mcpfilter.Emptied:
		if res.Reason == "" {
			t.Fatal("emptied without a reason")
		}
		if res.ContentType == "application/json" && !bytes.HasPrefix(res.Body, []byte(`{"jsonrpc":"2.0","id":`)) {
			t.Fatalf("emptied to %s", res.Body)
		}
	case mcpfilter.Filtered, mcpfilter.Passed:
		if res.ContentType != r.ContentType {
			t.Fatalf("content type %q for %q", res.ContentType, r.ContentType)
		}
	default:
		t.Fatalf("outcome %q", res.Outcome)
	}
	again := mcpfilter.Filter(mcpfilter.Response{Method: r.Method, ContentType: res.ContentType, Body: res.Body}, fuzzView{})
	if !bytes.Equal(again.Body, res.Body) || again.Changed || again.Outcome == mcpfilter.Emptied && res.Outcome != mcpfilter.Emptied {
		t.Fatalf("filtering again changes it:\n%q\n->\n%q (%s)", res.Body, again.Body, again.Reason)
	}
	return res
}

// checkMessage checks one JSON-RPC message Filter sends.
func checkMessage(t *testing.T, method string, msg []byte) {
	t.Helper()
	if err := strictjson.Check(msg, mcpfilter.MaxDepth); err != nil {
		t.Fatalf("sends what is not strict JSON (%v):\n%q", err, msg)
	}
	keys := listKeys[method]
	// Exactly as written.
	var exact map[string]any
	if err := json.Unmarshal(msg, &exact); err != nil {
		return // a string, a number: Filter sent it as a whole only as an empty list, checked above
	}
	if result, ok := exact["result"].(map[string]any); ok {
		if list, ok := result[keys[0]].([]any); ok {
			for _, e := range list {
				entry, ok := e.(map[string]any)
				if !ok {
					t.Fatalf("an entry that is not an object: %q", msg)
				}
				name, _ := entry[keys[1]].(string)
				if !fuzzVisible(name) {
					t.Fatalf("sends %q, which the view refuses:\n%q", name, msg)
				}
				if method == "tools/list" && strings.HasPrefix(name, "t") {
					var want any
					_ = json.Unmarshal([]byte(fuzzSchema), &want)
					if !reflect.DeepEqual(entry["inputSchema"], want) {
						t.Fatalf("tool %q shown with schema %v:\n%q", name, entry["inputSchema"], msg)
					}
				}
			}
		}
	}
	// As a case-insensitive reader reads it.
	var folded struct {
		Result struct {
			Tools             []foldedEntry `json:"tools"`
			Resources         []foldedEntry `json:"resources"`
			ResourceTemplates []foldedEntry `json:"resourceTemplates"`
			Prompts           []foldedEntry `json:"prompts"`
		} `json:"result"`
	}
	if json.Unmarshal(msg, &folded) != nil {
		return
	}
	var list []foldedEntry
	switch method {
	case "tools/list":
		list = folded.Result.Tools
	case "resources/list":
		list = folded.Result.Resources
	case "resources/templates/list":
		list = folded.Result.ResourceTemplates
	default:
		list = folded.Result.Prompts
	}
	for _, e := range list {
		name := e.Name
		switch method {
		case "resources/list":
			name = e.URI
		case "resources/templates/list":
			name = e.URITemplate
		}
		if !fuzzVisible(name) {
			t.Fatalf("a case-insensitive reader reads %q, which the view refuses:\n%q", name, msg)
		}
		if method == "tools/list" && strings.HasPrefix(name, "t") && string(e.InputSchema) != fuzzSchema {
			t.Fatalf("a case-insensitive reader reads tool %q with schema %s:\n%q", name, e.InputSchema, msg)
		}
	}
}

type foldedEntry struct {
	Name        string          `json:"name"`
	URI         string          `json:"uri"`
	URITemplate string          `json:"uriTemplate"`
	InputSchema json.RawMessage `json:"inputSchema"`
}

// readEvents reads an event stream as the SSE specification's interpretation steps say,
// written apart from the package's reader, and returns the data of every event dispatched.
func readEvents(stream []byte) []string {
	s := string(stream)
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	s = strings.TrimPrefix(s, "\uFEFF")
	var events []string
	var data strings.Builder
	for len(s) > 0 {
		i := strings.IndexAny(s, "\r\n")
		if i < 0 {
			break // an unterminated line at the end: nothing is dispatched after it
		}
		line := s[:i]
		if s[i] == '\r' && strings.HasPrefix(s[i+1:], "\n") {
			s = s[i+2:]
		} else {
			s = s[i+1:]
		}
		switch {
		case line == "":
			if data.Len() > 0 {
				events = append(events, strings.TrimSuffix(data.String(), "\n"))
			}
			data.Reset()
		case line[0] == ':':
		default:
			field, value, found := strings.Cut(line, ":")
			if found && strings.HasPrefix(value, " ") {
				value = value[1:]
			}
			if field == "data" {
				data.WriteString(value)
				data.WriteString("\n")
			}
		}
	}
	return events
}
