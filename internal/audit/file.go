package audit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Open opens (or creates, mode 0600) a log file for appending. If the file already has records,
// the chain continues from its last line, which must be a complete, self-consistent record,
// keyed with opts.Key if the chain is keyed, and not keyed if opts.Key is empty: Open refuses to
// append to a file whose last line is truncated or corrupt, or to mix keyed and unkeyed records.
// It checks only that line; Verify checks the rest. An empty file continues the chain of its
// newest rotated file (FILE.<16 digits>), if there is one. The file is locked against a second
// Log, in this process or another, where the system has flock.
func Open(path string, opts Options) (*Log, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		syncDir(filepath.Dir(path)) // the new file's name survives a crash of the machine
	} else if errors.Is(err, fs.ErrExist) {
		f, err = os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	fail := func(err error) (*Log, error) {
		f.Close()
		return nil, err
	}
	if err := lockFile(f); err != nil {
		return fail(fmt.Errorf("audit: %s is in use by another audit log (%v)", path, err))
	}
	tail, size, err := tailOf(f, opts.Key)
	if err != nil {
		return fail(fmt.Errorf("audit: %s: %v", path, err))
	}
	switch {
	case size > 0:
		opts.From = tail
	default:
		prev, err := lastRotated(path)
		if err != nil {
			return fail(fmt.Errorf("audit: %s: %v", path, err))
		}
		if prev != "" {
			pf, err := os.Open(prev)
			if err != nil {
				return fail(fmt.Errorf("audit: %w", err))
			}
			tail, _, err = tailOf(pf, opts.Key)
			pf.Close()
			if err != nil {
				return fail(fmt.Errorf("audit: %s, the file %s continues: %v", prev, path, err))
			}
			opts.From = tail
		}
	}
	l := newLog(f, opts)
	if l.err != nil {
		return fail(l.err)
	}
	l.f, l.path, l.size, l.rotate = f, path, size, opts.Rotate
	l.file.Store(f)
	if every := opts.SyncEvery; every < 0 {
		l.syncEach = true
	} else {
		if every == 0 {
			every = DefaultSyncEvery
		}
		l.stop, l.done = make(chan struct{}), make(chan struct{})
		go l.syncLoop(every)
	}
	return l, nil
}

// syncDir fsyncs a directory, as far as the system allows: not every one can.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

func (l *Log) syncLoop(every time.Duration) {
	defer close(l.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			if !l.dirty.Swap(false) {
				continue
			}
			f := l.file.Load()
			if err := f.Sync(); err != nil {
				if l.file.Load() != f {
					continue // rotated meanwhile: the rotation synced and closed it
				}
				l.mu.Lock()
				if l.err == nil {
					l.err = fmt.Errorf("audit: fsync failed, no further records accepted: %w", err)
				}
				l.mu.Unlock()
				return
			}
		}
	}
}
