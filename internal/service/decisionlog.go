package service

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/agentauthz/agentauthz/internal/audit"
	"github.com/agentauthz/agentauthz/internal/httpapi"
	"github.com/agentauthz/agentauthz/internal/metrics"
)

// DecisionLogConfig says how serve keeps the decision log's chain.
type DecisionLogConfig struct {
	// KeyFile holds the key of a keyed chain (audit.ReadKey): records then carry an HMAC only
	// the key's holders can make. Empty: unkeyed.
	KeyFile string
	// Rotate starts a new file, chained to the last, past a size or an age; zero never does. A
	// log on Stdout does not rotate.
	Rotate audit.Rotation
	// HeadEvery is how often the chain's head goes to the server log when it moved: zero means
	// DefaultHeadEvery, a negative value only at rotation and shutdown.
	HeadEvery time.Duration
}

// DefaultHeadEvery is how often the decision log's head is written to the server log.
const DefaultHeadEvery = time.Minute

// decisionLog is the running decision log: the chain and the queue in front of it.
type decisionLog struct {
	log   *audit.Log
	queue *audit.Queue
	name  string // the file, or "stdout"
}

// openDecisionLog opens the decision log behind a queue, or returns nil for "off". Its records
// not written, fields cut and head go to the metrics; rotations, failed rotations and the head
// to the server log.
func openDecisionLog(cfg Config, m *metrics.Metrics) (*decisionLog, error) {
	where, log, dc := cfg.DecisionLog, cfg.Log, cfg.DecisionLogChain
	if where == "off" || where == "" {
		if dc.KeyFile != "" || dc.Rotate != (audit.Rotation{}) {
			return nil, errors.New("a key or a rotation needs a decision log")
		}
		return nil, nil
	}
	opts := audit.Options{Observer: m.DecisionLog(
		func(file string, last audit.Head) {
			log.Info("decision log rotated: record its head", "rotated_to", file, "head", last.String(), "seq", last.Seq, "hash", last.Hash)
		},
		func(err *audit.WriteError) {
			if err.Reason == audit.ReasonRotate { // records not written are logged by the queue
				log.Error("decision log rotation failed; still writing to the same file", "error", err.Error())
			}
		})}
	if dc.KeyFile != "" {
		key, err := audit.ReadKey(dc.KeyFile)
		if err != nil {
			return nil, err
		}
		opts.Key = key
		if where != "-" && sameDir(dc.KeyFile, where) {
			log.Warn("the decision log key is in the log's own directory: whoever can rewrite the log can likely read the key, and forge a chain that verifies",
				"key", dc.KeyFile, "decision_log", where)
		}
	}
	d := &decisionLog{name: where}
	switch where {
	case "-":
		if dc.Rotate != (audit.Rotation{}) {
			return nil, errors.New("a decision log on stdout does not rotate; name a file")
		}
		d.log, d.name = audit.New(cfg.Stdout, opts), "stdout"
	default:
		opts.Rotate = dc.Rotate
		var err error
		if d.log, err = audit.Open(where, opts); err != nil {
			return nil, err
		}
	}
	opts.Observer.Written(d.log.Head()) // the metric starts where the chain stands
	d.queue = audit.NewQueue(d.log, audit.QueueOptions{ErrLog: log})
	log.Info("decision log open", "decision_log", d.name, "keyed", d.log.Keyed(), "head", d.log.Head().String(),
		"rotate_size", dc.Rotate.Size, "rotate_every", dc.Rotate.Every.String())
	return d, nil
}

// sameDir reports whether two files are in the same directory.
func sameDir(a, b string) bool {
	da, err1 := filepath.Abs(filepath.Dir(a))
	db, err2 := filepath.Abs(filepath.Dir(b))
	if err1 != nil || err2 != nil {
		return false
	}
	sa, err1 := os.Stat(da)
	sb, err2 := os.Stat(db)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// logHead writes the chain's head to the server log: out of the decision log writer's reach, so
// that records later cut from the log's end are caught (agentauthz audit verify --head).
func (d *decisionLog) logHead(log *slog.Logger, msg string) {
	h := d.log.Head()
	log.Info(msg, "decision_log", d.name, "head", h.String(), "seq", h.Seq, "hash", h.Hash, "keyed", d.log.Keyed())
}

// logHeads writes the head to the server log every interval in which it moved, until ctx ends.
func (d *decisionLog) logHeads(ctx context.Context, every time.Duration, log *slog.Logger) {
	if every == 0 {
		every = DefaultHeadEvery
	}
	if every < 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	last := d.log.Head()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if h := d.log.Head(); h != last {
				last = h
				d.logHead(log, "decision log head")
			}
		}
	}
}

// close writes what is queued, closes the log and logs its final head.
func (d *decisionLog) close(log *slog.Logger) {
	if err := d.queue.Close(); err != nil {
		log.Error("closing the decision log", "error", err.Error())
	}
	d.logHead(log, "decision log closed: record its head")
}

// register serves the head to approvers and auditors on the HTTP listener, authenticated as the
// approval API is.
func (d *decisionLog) register(mux *http.ServeMux, authorize func(http.ResponseWriter, *http.Request) bool) {
	httpapi.LogHead{Head: d.log.Head, Keyed: d.log.Keyed(), File: d.name, Authorize: authorize}.Register(mux)
}
