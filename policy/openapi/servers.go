package openapi

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
)

// serversPath returns the path the servers' URLs share, and the first server's host name.
func serversPath(servers openapi3.Servers) (p, host, problem string) {
	for i, s := range servers {
		if s == nil {
			continue
		}
		raw := s.URL
		// Substitute each variable's default: a variable in the path would make the path one of
		// several, which a route cannot be.
		for name, v := range s.Variables {
			if v == nil {
				continue
			}
			raw = strings.ReplaceAll(raw, "{"+name+"}", "\x00"+v.Default+"\x00")
		}
		u, err := url.Parse(strings.ReplaceAll(raw, "\x00", ""))
		if err != nil {
			return "", "", fmt.Sprintf("server URL %q: %v", s.URL, err)
		}
		pathPart := raw
		if i := strings.Index(pathPart, "://"); i >= 0 {
			pathPart = pathPart[i+3:]
			if j := strings.IndexByte(pathPart, '/'); j >= 0 {
				pathPart = pathPart[j:]
			} else {
				pathPart = ""
			}
		}
		if strings.ContainsAny(pathPart, "\x00{") {
			return "", "", fmt.Sprintf("server URL %q has a variable in its path: set the policy's base_path", s.URL)
		}
		sp := strings.TrimRight(u.Path, "/")
		if i == 0 {
			p = sp
		} else if sp != p {
			return "", "", fmt.Sprintf("the servers' paths differ (%q, %q): set the policy's base_path", p, sp)
		}
		if host == "" && !strings.ContainsAny(u.Hostname(), "\x00{") {
			host = u.Hostname()
		}
	}
	return p, host, ""
}
