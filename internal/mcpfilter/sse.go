package mcpfilter

import (
	"github.com/agentauthz/agentauthz/policy/eventstream"
)

// filterStream filters an event stream: every event's data as one JSON-RPC message. An event
// not ended by an empty line is never dispatched, and is not sent.
func filterStream(k *kind, r Response, v View) Result {
	res := Result{ContentType: r.ContentType, Outcome: Passed}
	out := make([]byte, 0, len(r.Body)+64)
	if _, err := eventstream.Read(r.Body, func(ev *eventstream.Event) error {
		out = res.appendEvent(out, k, ev, v)
		return nil
	}); err != nil {
		return emptied(k, nil, err.Error())
	}
	res.Body = out
	return res
}

// appendEvent writes one ended event, its data filtered, and notes the outcome in res.
func (res *Result) appendEvent(out []byte, k *kind, ev *eventstream.Event, v View) []byte {
	send := ev.Data
	if len(send) > 0 { // an empty data field (a stream's priming event) carries no message
		m := filterMessage(k, send, v, true)
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
	return eventstream.Append(out, ev, send)
}
