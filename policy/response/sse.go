package response

import (
	"errors"

	"github.com/agentauthz/agentauthz/policy/eventstream"
)

// stream filters an event stream answering a tools/call: each event's data is one JSON-RPC
// message, filtered as a JSON body is; requests and notifications from the server pass. One
// event that cannot be shown refuses the whole stream. An event not ended by an empty line is
// never dispatched by a reader, and is not sent.
func (r *Rule) stream(body []byte, rep *report) (out []byte, changed bool, reason string) {
	out = make([]byte, 0, len(body)+64)
	unended, err := eventstream.Read(body, func(ev *eventstream.Event) error {
		send := ev.Data
		if len(send) > 0 { // an empty data field (a stream's priming event) carries no message
			m, ch, why := r.message(send, rep, true)
			if why != "" {
				return errors.New("an event: " + why)
			}
			send, changed = m, changed || ch
		}
		out = eventstream.Append(out, ev, send)
		return nil
	})
	if err != nil {
		return nil, false, err.Error()
	}
	if unended {
		changed = true // an event not ended: it is not sent, lest a reader dispatch it unseen
	}
	if !changed {
		// The events are sent as they came, not as rewritten.
		return body, false, ""
	}
	return out, true, ""
}
