package response

import (
	"bytes"
	"unicode/utf8"
)

// stream filters an event stream answering a tools/call: each event's data is one JSON-RPC
// message, filtered as a JSON body is; requests and notifications from the server pass. One
// event that cannot be shown refuses the whole stream. An event not ended by an empty line is
// never dispatched by a reader, and is not sent.
func (r *Rule) stream(body []byte, rep *report) (out []byte, changed bool, reason string) {
	if !utf8.Valid(body) {
		return nil, false, "the event stream is not valid UTF-8"
	}
	if bytes.IndexByte(body, 0) >= 0 {
		return nil, false, "the event stream holds a NUL byte"
	}
	out = make([]byte, 0, len(body)+64)
	rest := bytes.TrimPrefix(body, []byte("\uFEFF"))
	var ev event
	for len(rest) > 0 {
		var line []byte
		line, rest = nextLine(rest)
		if len(line) == 0 {
			var why string
			var ch bool
			out, ch, why = r.appendEvent(out, &ev, rep)
			changed = changed || ch
			if why != "" {
				return nil, false, why
			}
			ev = event{}
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
			ev.typ, ev.hasType = value, true
		case "data":
			if ev.hasData {
				ev.data = append(append(ev.data, '\n'), value...)
			} else {
				ev.data = append(ev.data[:0:0], value...)
			}
			ev.hasData = true
		case "id":
			ev.id, ev.hasID = value, true
		case "retry":
			if isDigits(value) {
				ev.retry, ev.hasRetry = value, true
			}
		}
	}
	if ev.hasData || ev.hasID || ev.hasRetry {
		changed = true // an event not ended: it is not sent, lest a reader dispatch it unseen
	}
	if !changed {
		// The events are sent as they came, not as rewritten.
		return body, false, ""
	}
	return out, true, ""
}

// event is one server-sent event as read: the last value of each field that matters, and its
// data lines joined.
type event struct {
	typ, id, retry, data              []byte
	hasType, hasID, hasRetry, hasData bool
}

// appendEvent writes one ended event, its data filtered.
func (r *Rule) appendEvent(out []byte, ev *event, rep *report) (_ []byte, changed bool, reason string) {
	if !ev.hasData && !ev.hasID && !ev.hasRetry {
		return out, false, "" // nothing a reader acts on
	}
	if ev.hasData && ev.hasType && len(ev.typ) > 0 {
		out = appendField(out, "event", ev.typ)
	}
	if ev.hasID {
		out = appendField(out, "id", ev.id)
	}
	if ev.hasRetry {
		out = appendField(out, "retry", ev.retry)
	}
	if ev.hasData {
		send := ev.data
		if len(send) > 0 { // an empty data field (a stream's priming event) carries no message
			m, ch, why := r.message(send, rep, true)
			if why != "" {
				return out, false, "an event: " + why
			}
			send, changed = m, ch
		}
		for {
			line, rest, more := bytes.Cut(send, []byte("\n"))
			out = appendField(out, "data", line)
			if !more {
				break
			}
			send = rest
		}
	}
	return append(out, '\n'), changed, ""
}

// nextLine splits off the first line of b: lines end at "\r\n", "\n" or "\r".
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
