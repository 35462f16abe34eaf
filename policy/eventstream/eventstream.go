// Package eventstream reads and writes server-sent event streams (text/event-stream, as the
// HTML standard defines them) for the checks of MCP answers: the list filter and the response
// rules each rewrite the data of every event and keep the rest as a reader would see it.
package eventstream

import (
	"bytes"
	"errors"
	"unicode/utf8"
)

// Event is one event as a reader dispatches it: the last value of each field that matters
// (retry: the last valid one), and its data lines joined by "\n".
type Event struct {
	Type, ID, Retry, Data             []byte
	HasType, HasID, HasRetry, HasData bool
}

// Dispatched reports whether a reader acts on e at all: it has data, or sets the last event id
// or the reconnection time.
func (e *Event) Dispatched() bool { return e.HasData || e.HasID || e.HasRetry }

// Errors Read returns for a stream no reader reads as it was written.
var (
	ErrUTF8 = errors.New("the event stream is not valid UTF-8")
	ErrNUL  = errors.New("the event stream holds a NUL byte")
)

// Read calls each for every event of body that an empty line ends, in order, stopping at the
// first error each returns. The event and its data are valid only during the call. unended
// reports an event that the stream's end left without its empty line: a reader never
// dispatches it, but it would once more of the stream came.
func Read(body []byte, each func(*Event) error) (unended bool, err error) {
	if !utf8.Valid(body) {
		return false, ErrUTF8
	}
	if bytes.IndexByte(body, 0) >= 0 {
		return false, ErrNUL
	}
	rest := bytes.TrimPrefix(body, []byte("\uFEFF")) // one byte order mark, which readers skip
	var ev Event
	var joined bool // the data has several lines, joined in buf
	var buf []byte
	for len(rest) > 0 {
		var line []byte
		line, rest = nextLine(rest)
		if len(line) == 0 {
			if ev.Dispatched() {
				if err := each(&ev); err != nil {
					return false, err
				}
			}
			ev, joined = Event{}, false
			continue
		}
		if line[0] == ':' {
			continue // a comment
		}
		name, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			name, value = line[:i], bytes.TrimPrefix(line[i+1:], []byte(" "))
		}
		switch string(name) {
		case "event":
			ev.Type, ev.HasType = value, true
		case "data":
			switch {
			case !ev.HasData: // a view of the one line, until a second comes
				ev.Data = value
			case !joined:
				buf = append(append(append(buf[:0], ev.Data...), '\n'), value...)
				ev.Data, joined = buf, true
			default:
				buf = append(append(buf, '\n'), value...)
				ev.Data = buf
			}
			ev.HasData = true
		case "id":
			ev.ID, ev.HasID = value, true
		case "retry":
			if isDigits(value) {
				ev.Retry, ev.HasRetry = value, true
			}
		}
	}
	return ev.Dispatched(), nil
}

// Append writes e, ended by its empty line, with data in place of e.Data: its type (when it has
// data), id and retry, then data, one field per line.
func Append(out []byte, e *Event, data []byte) []byte {
	if e.HasData && e.HasType && len(e.Type) > 0 {
		out = appendField(out, "event", e.Type)
	}
	if e.HasID {
		out = appendField(out, "id", e.ID)
	}
	if e.HasRetry {
		out = appendField(out, "retry", e.Retry)
	}
	if e.HasData {
		for {
			line, rest, more := bytes.Cut(data, []byte("\n"))
			out = appendField(out, "data", line)
			if !more {
				break
			}
			data = rest
		}
	}
	return append(out, '\n')
}

// nextLine splits off the first line of b: lines end at "\r\n", "\n" or "\r". A last line without
// an ending is read like a terminated one, but the event it is part of never ends.
func nextLine(b []byte) (line, rest []byte) {
	i := bytes.IndexAny(b, "\r\n")
	if i < 0 {
		return b, nil
	}
	line, rest = b[:i], b[i+1:]
	if b[i] == '\r' && len(rest) > 0 && rest[0] == '\n' {
		rest = rest[1:]
	}
	return line, rest
}

func isDigits(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// appendField writes one field line: "name: value", or "name:" for an empty value.
func appendField(out []byte, name string, value []byte) []byte {
	out = append(out, name...)
	out = append(out, ':')
	if len(value) > 0 {
		out = append(out, ' ')
		out = append(out, value...)
	}
	return append(out, '\n')
}
