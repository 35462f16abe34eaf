// Package reload keeps the policy in force current with the policy files on disk. It watches
// the policy's directory (debounced) and reloads on demand (SIGHUP); each new snapshot is
// compiled off the request path and swapped in atomically. A policy that fails to load is
// logged with every problem and leaves the last good one serving.
package reload

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/agentauthz/agentauthz/internal/metrics"
	"github.com/agentauthz/agentauthz/policy"
)

// DefaultDebounce is how long the watcher waits after the last change before reloading, so
// that an editor's save (several writes, a rename) reloads once.
const DefaultDebounce = 200 * time.Millisecond

// Reloader loads the policy at Path into Store.
type Reloader struct {
	// Path is the policy file or directory.
	Path string
	// Load compiles the policy at Path. It runs off the request path.
	Load    func(path string) (*policy.Snapshot, error)
	Store   *policy.Store
	Log     *slog.Logger
	Metrics *metrics.Metrics
	// Clock is injected for tests; nil means time.Now.
	Clock    func() time.Time
	Debounce time.Duration

	mu sync.Mutex // one load at a time
}

// Reload loads the policy now. On success the new snapshot is in force; on failure the old
// one stays, the failure is recorded in the Store, logged and counted, and returned.
func (r *Reloader) Reload(trigger string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	log := r.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := time.Now
	if r.Clock != nil {
		now = r.Clock
	}
	start := now()
	snap, err := r.Load(r.Path)
	// Loading allocates many times what the snapshot keeps (decoding, schemas, compiled
	// programs): hand it back to the system now, rather than keep a heap that large (the
	// garbage collector's target is several times the live heap) until it is collected and
	// scavenged, long after.
	defer debug.FreeOSMemory()
	if err != nil {
		var problems policy.Problems
		if !errors.As(err, &problems) {
			problems = policy.Problems{err.Error()}
		}
		r.Store.Failed(policy.LoadFailure{At: start, Problems: problems})
		r.Metrics.Reload(false, "")
		in := r.Store.Load()
		serving := ""
		if in != nil {
			serving = in.Revision()
		}
		log.Error("policy reload failed; the previous policy keeps serving",
			"trigger", trigger, "path", r.Path, "problems", []string(problems), "serving_revision", serving)
		return err
	}
	old := r.Store.Swap(snap)
	r.Metrics.Reload(true, snap.Revision())
	if old != nil && old.Revision() == snap.Revision() {
		log.Debug("policy unchanged", "trigger", trigger, "revision", snap.Revision())
		return nil
	}
	st := snap.Stats()
	log.Info("policy loaded", "trigger", trigger, "path", r.Path, "revision", snap.Revision(),
		"agents", st.Agents, "hosts", st.Hosts, "routes", st.Routes, "took_ms", now().Sub(start).Milliseconds())
	return nil
}

// Watch reloads whenever a file in the policy's directory changes, and whenever hup delivers,
// until ctx ends. It returns an error only if the directory cannot be watched.
func (r *Reloader) Watch(ctx context.Context, hup <-chan os.Signal) error {
	dir := r.Path
	if st, err := os.Stat(r.Path); err == nil && !st.IsDir() {
		// Editors replace a file by renaming a new one over it: watch its directory.
		dir = filepath.Dir(r.Path)
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	defer w.Close()
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("reload: watch %s: %w", dir, err)
	}
	debounce := r.Debounce
	if debounce == 0 {
		debounce = DefaultDebounce
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			_ = r.Reload("signal") // failures are recorded and logged by Reload
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			timer.Reset(debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			if r.Log != nil {
				r.Log.Warn("policy watcher error; reloading to be safe", "error", err.Error())
			}
			timer.Reset(debounce)
		case <-timer.C:
			_ = r.Reload("file change")
		}
	}
}
