package mcpfilter

import (
	"bytes"
	"unicode/utf8"
)

// event is one server-sent event as read: the last value of each field that matters (retry:
// the last valid one), and whether it has data; the data itself is gathered apart.
type event struct {
	typ, id, retry           []byte
	hasType, hasID, hasRetry bool
	hasData, joined          bool // joined: the data has several lines, joined in buf
}

// filterStream filters an event stream: every event's data as one JSON-RPC message.
func filterStream(k *kind, r Response, v View) Result {
	body := r.Body
	if !utf8.Valid(body) {
		return emptied(k, nil, "the event stream is not valid UTF-8")
	}
	if bytes.IndexByte(body, 0) >= 0 {
		return emptied(k, nil, "the event stream holds a NUL byte")
	}
	res := Result{ContentType: r.ContentType, Outcome: Passed}
	out := make([]byte, 0, len(body)+64)
	rest := bytes.TrimPrefix(body, []byte("\uFEFF")) // one byte order mark, which readers skip
	var ev event
	// data is the event's data: a view of its one data line, or the lines joined in buf.
	var data, buf []byte
	for len(rest) > 0 {
		var line []byte
		line, rest = nextLine(rest)
		if len(line) == 0 {
			out = res.appendEvent(out, k, &ev, data, v)
			ev, data = event{}, nil
			continue
		}
		if line[0] == ':' {
			continue // a comment
		}
		name, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			name, value = line[:i], line[i+1:]
			value = bytes.TrimPrefix(value, []byte(" "))
		}
		switch string(name) {
		case "event":
			ev.typ, ev.hasType = value, true
		case "data":
			switch {
			case !ev.hasData:
				data = value
			case !ev.joined: // the second line
				buf = append(append(append(buf[:0], data...), '\n'), value...)
				data, ev.joined = buf, true
			default:
				buf = append(append(buf, '\n'), value...)
				data = buf
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
	// An event not ended by an empty line is never dispatched, and is not sent.
	res.Body = out
	return res
}

// nextLine splits off the first line of b: lines end at "\r\n", "\n" or "\r". A last line without
// an ending is returned with rest nil, as is a line ending at the end of b; an unterminated last
// line is therefore read like a terminated one, but the event it is part of never ends.
func nextLine(b []byte) (line, rest []byte) {
	i := bytes.IndexAny(b, "\r\n")
	if i < 0 {
		return b, nil
	}
	line, rest = b[:i], b[i+1:]
	if b[i] == '\r' && len(rest) > 0 && rest[0] == '\n' {
		rest = rest[1:]
	}
	if len(rest) == 0 {
		rest = nil
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

// appendEvent writes one ended event, its data filtered, and notes the outcome in res.
func (res *Result) appendEvent(out []byte, k *kind, ev *event, data []byte, v View) []byte {
	if !ev.hasData && !ev.hasID && !ev.hasRetry {
		return out // nothing a reader acts on: no event is dispatched, no state changes
	}
	if ev.hasData && ev.hasType && len(ev.typ) > 0 {
		out = append(out, "event: "...)
		out = append(out, ev.typ...)
		out = append(out, '\n')
	}
	if ev.hasID {
		out = appendField(out, "id", ev.id)
	}
	if ev.hasRetry {
		out = appendField(out, "retry", ev.retry)
	}
	if ev.hasData {
		send := data
		if len(data) > 0 { // an empty data field (a stream's priming event) carries no message
			m := filterMessage(k, data, v, true)
			switch m.outcome {
			case Emptied:
				send = Empty(k.method, m.id)
				res.Outcome = Emptied
				if res.Reason == "" {
					res.Reason = m.reason
				}
			case Filtered:
				send = m.out
				if res.Outcome == Passed {
					res.Outcome = Filtered
				}
			}
			res.Removed = append(res.Removed, m.removed...)
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
	return append(out, '\n')
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
