package eventstream

import (
	"errors"
	"testing"
)

// TestReadAppend: events are read as a reader dispatches them (line endings, comments, joined
// data, the last valid retry, events that set nothing skipped) and written back field by field;
// an event the stream's end leaves open is reported, not dispatched.
func TestReadAppend(t *testing.T) {
	body := "\uFEFF: hello\r\n\r\nevent: message\rid: 7\ndata: a\ndata:b\r\ndata\nretry: x\nretry: 30\n\nid\n\ndata: {\"open\":1}\n"
	var out []byte
	var n int
	unended, err := Read([]byte(body), func(e *Event) error {
		n++
		out = Append(out, e, e.Data)
		return nil
	})
	if err != nil || !unended || n != 2 {
		t.Fatalf("Read = unended %v, %v after %d events; want 2 events and the last left open", unended, err, n)
	}
	want := "event: message\nid: 7\nretry: 30\ndata: a\ndata: b\ndata:\n\nid:\n\n"
	if string(out) != want {
		t.Errorf("written:\n%q\nwant:\n%q", out, want)
	}

	stop := errors.New("stop")
	if _, err := Read([]byte("data: 1\n\ndata: 2\n\n"), func(*Event) error { return stop }); err != stop {
		t.Errorf("an error from each: %v, want it returned", err)
	}
	for body, want := range map[string]error{"data: \xff\n\n": ErrUTF8, "data: \x00\n\n": ErrNUL} {
		if _, err := Read([]byte(body), func(*Event) error { return nil }); err != want {
			t.Errorf("Read(%q) = %v, want %v", body, err, want)
		}
	}
}
