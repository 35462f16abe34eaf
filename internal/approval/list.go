package approval

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// Query selects approvals for Store.List.
type Query struct {
	// State selects the approvals in that state as of now; "" selects all.
	State State
	// After continues a listing: only approvals after it in list order (Page.Next). The zero
	// Cursor starts from the newest.
	After Cursor
	// Limit is the most approvals a page holds; 0 or less holds all.
	Limit int
}

// Page is one page of a listing, newest first.
type Page struct {
	Approvals []Approval
	// More is how many more approvals the query selects after this page.
	More int
	// Next continues the listing after this page (Query.After); zero when More is 0.
	Next Cursor
}

// Cursor is a place in list order (CreatedAt descending, then ID ascending): the approval a
// page ended with.
type Cursor struct {
	CreatedAt time.Time
	ID        string
}

// CursorOf is the place of a in list order.
func CursorOf(a Approval) Cursor { return Cursor{CreatedAt: a.CreatedAt, ID: a.ID} }

// IsZero reports whether c is the zero Cursor: the start of a listing.
func (c Cursor) IsZero() bool { return c.ID == "" }

// Before reports whether a comes after c in list order: created before it, or at the same
// instant with a greater ID. Every approval comes after the zero Cursor.
func (c Cursor) Before(a Approval) bool {
	if c.IsZero() {
		return true
	}
	if !a.CreatedAt.Equal(c.CreatedAt) {
		return a.CreatedAt.Before(c.CreatedAt)
	}
	return a.ID > c.ID
}

// String is the cursor as the approvals API writes it: seconds and nanoseconds of CreatedAt
// since the Unix epoch and the ID, e.g. "1772366400.000000000.apr_...". The zero Cursor is "".
func (c Cursor) String() string {
	if c.IsZero() {
		return ""
	}
	ns := strconv.Itoa(c.CreatedAt.Nanosecond())
	return strconv.FormatInt(c.CreatedAt.Unix(), 10) + "." + strings.Repeat("0", 9-len(ns)) + ns + "." + c.ID
}

// ErrCursor means a cursor is not one String wrote.
var ErrCursor = errors.New("approval: not a listing cursor")

// ParseCursor reads a cursor String wrote; "" is the zero Cursor.
func ParseCursor(s string) (Cursor, error) {
	if s == "" {
		return Cursor{}, nil
	}
	secs, rest, ok := strings.Cut(s, ".")
	ns, id, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 || len(ns) != 9 || !ValidID(id) || secs == "" || len(secs) > 19 {
		return Cursor{}, ErrCursor
	}
	for _, c := range []byte(ns) {
		if c < '0' || c > '9' {
			return Cursor{}, ErrCursor
		}
	}
	sec, err := strconv.ParseInt(secs, 10, 64)
	if err != nil || strconv.FormatInt(sec, 10) != secs {
		return Cursor{}, ErrCursor
	}
	n, _ := strconv.Atoi(ns)
	return Cursor{CreatedAt: time.Unix(sec, int64(n)), ID: id}, nil
}

// Paginate is the page of q in all, the approvals a store selected by state and sorted in
// list order: for stores that read them all.
func Paginate(all []Approval, q Query) Page {
	start := 0
	if !q.After.IsZero() {
		for start < len(all) && !q.After.Before(all[start]) {
			start++
		}
	}
	rest := all[start:]
	if q.Limit <= 0 || len(rest) <= q.Limit {
		return Page{Approvals: rest}
	}
	page := rest[:q.Limit:q.Limit]
	return Page{Approvals: page, More: len(rest) - q.Limit, Next: CursorOf(page[len(page)-1])}
}

// ListOrder compares approvals in list order: newest first, then by ID. For sort.Slice and
// slices.SortFunc.
func ListOrder(a, b Approval) int {
	if !a.CreatedAt.Equal(b.CreatedAt) {
		if a.CreatedAt.After(b.CreatedAt) {
			return -1
		}
		return 1
	}
	return strings.Compare(a.ID, b.ID)
}
