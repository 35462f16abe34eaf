package helpdesk

import (
	"io/fs"
	"net/http"
	"path"

	"github.com/agentauthz/agentauthz/internal/demo"
)

// OpenAPIPath is where the API serves its OpenAPI description.
const OpenAPIPath = "/openapi.json"

// OpenAPI returns the API's OpenAPI 3.1 description: the demo policy's helpdesk.openapi.json,
// which the policy's helpdesk host is written from. One file, so that the API, its description
// and the policy cannot disagree; a test holds the description to the handlers.
func OpenAPI() ([]byte, error) {
	return fs.ReadFile(demo.Files, path.Join(demo.Dir, "helpdesk.openapi.json"))
}

// serveOpenAPI serves the description, behind the API's credential as every route is.
func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	data, err := OpenAPI()
	if err != nil {
		problem(w, http.StatusInternalServerError, "internal", "The description is not available.")
		return
	}
	w.Header().Set("content-type", "application/json")
	_, _ = w.Write(data) // the client went away; nothing to do
}
