package audit

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// rotatedDigits is how many digits the sequence number in a rotated file's name has: names sort
// in chain order.
const rotatedDigits = 16

// RotatedName is the name a log file is renamed to when it is rotated: the file's name, a dot,
// and the sequence number of its last record in 16 digits (decisions.log.0000000000001234).
func RotatedName(path string, last uint64) string {
	return fmt.Sprintf("%s.%0*d", path, rotatedDigits, last)
}

// isRotated reports whether name is a rotated file of the log named base.
func isRotated(name, base string) bool {
	suffix, ok := strings.CutPrefix(name, base+".")
	if !ok || len(suffix) != rotatedDigits {
		return false
	}
	for i := range len(suffix) {
		if suffix[i] < '0' || suffix[i] > '9' {
			return false
		}
	}
	return true
}

// lastRotated returns the newest rotated file of the log at path, or "".
func lastRotated(path string) (string, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	last := ""
	for _, e := range entries {
		if e.Type().IsRegular() && isRotated(e.Name(), base) && e.Name() > last {
			last = e.Name()
		}
	}
	if last == "" {
		return "", nil
	}
	return filepath.Join(dir, last), nil
}

// rotationDue reports whether the file must rotate before a record of n bytes written at now:
// the rotation says so and the file (with what is batched for it) has records.
func (l *Log) rotationDue(now time.Time, n int) bool {
	if l.f == nil {
		return false
	}
	if l.opened.IsZero() {
		l.opened = now
	}
	size := l.size + int64(len(l.batch))
	if size == 0 {
		return false
	}
	r := l.rotate
	return r.Size > 0 && size+int64(n) > r.Size || r.Every > 0 && now.Sub(l.opened) >= r.Every
}

// rotateNow rotates the file. A rotation that fails is reported and leaves the log writing to
// its file: no record is lost for it.
func (l *Log) rotateNow(kind string, now time.Time) {
	if err := l.rotateFile(now); err != nil {
		if l.obs != nil {
			l.obs.Failed(&WriteError{Reason: ReasonRotate, Kind: kind, Err: fmt.Errorf("audit: rotating %s (still writing to it): %w", l.path, err)})
		}
	}
}

// rotateFile renames the file to its rotated name and opens a new one in its place. On failure
// the log keeps its file, under its name.
func (l *Log) rotateFile(now time.Time) error {
	if err := l.f.Sync(); err != nil {
		return err
	}
	name := RotatedName(l.path, l.seq)
	if _, err := os.Lstat(name); err == nil {
		return fmt.Errorf("%s exists", name)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Rename(l.path, name); err != nil {
		return err
	}
	undo := func(err error) error {
		if uerr := os.Rename(name, l.path); uerr != nil {
			return fmt.Errorf("%v; and renaming %s back failed: %v", err, name, uerr)
		}
		return err
	}
	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return undo(err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		os.Remove(l.path)
		return undo(err)
	}
	syncDir(filepath.Dir(l.path))
	old := l.f
	l.f, l.w, l.size, l.opened = f, f, 0, now
	l.file.Store(f)
	l.dirty.Store(false)
	old.Close() // synced above
	if l.obs != nil {
		l.obs.Rotated(name, Head{Seq: l.seq, Hash: string(l.head[:])})
	}
	return nil
}
