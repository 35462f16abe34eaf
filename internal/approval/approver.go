package approval

import "strings"

// Approver is an authenticated person who may decide held requests.
type Approver struct {
	Name   string
	Groups []string
}

// May reports whether the approver is one of approvers ("user:NAME", "group:NAME").
func (p Approver) May(approvers []string) bool {
	for _, a := range approvers {
		if kind, name, _ := strings.Cut(a, ":"); kind == "user" && name == p.Name {
			return true
		} else if kind == "group" {
			for _, g := range p.Groups {
				if g == name {
					return true
				}
			}
		}
	}
	return false
}

// IsWorkload reports whether name is a SPIFFE ID (the scheme in any case): a workload, which may
// never approve.
func IsWorkload(name string) bool {
	return len(name) >= len("spiffe:") && strings.EqualFold(name[:len("spiffe:")], "spiffe:")
}
