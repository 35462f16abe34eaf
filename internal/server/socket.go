package server

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
)

// SocketAccess says who may connect to the gRPC listener's unix socket. Connecting to a unix
// socket needs write permission on its file, so the mode and group decide which other users may
// ask for decisions: an Envoy running as another user connects through a group both share.
type SocketAccess struct {
	// Mode is the socket file's permission bits (ParseSocketMode); zero leaves them as the
	// process umask makes them.
	Mode fs.FileMode
	// Group is the group the socket file belongs to: a group name, or a numeric gid
	// (LookupGroup). Empty leaves the group the file was created with. It needs Mode.
	Group string
}

// set reports whether a is anything but the default.
func (a SocketAccess) set() bool { return a.Mode != 0 || a.Group != "" }

// ParseSocketMode reads a socket file's permission bits in octal, as chmod takes them: three or
// four digits 0-7 (0660, 660), at most 0777. Nothing else is read as a mode: no 0o prefix, no
// symbolic modes, no setuid, setgid or sticky bits.
func ParseSocketMode(s string) (fs.FileMode, error) {
	if len(s) < 3 || len(s) > 4 {
		return 0, fmt.Errorf("server: socket mode %q is not three or four octal digits, like 0660", s)
	}
	for _, c := range s {
		if c < '0' || c > '7' {
			return 0, fmt.Errorf("server: socket mode %q is not three or four octal digits, like 0660", s)
		}
	}
	if len(s) == 4 && s[0] != '0' {
		return 0, fmt.Errorf("server: socket mode %q sets setuid, setgid or sticky bits; a socket takes permission bits only (at most 0777)", s)
	}
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil {
		return 0, fmt.Errorf("server: socket mode %q: %w", s, err)
	}
	if n == 0 {
		return 0, fmt.Errorf("server: socket mode %q lets nobody connect", s)
	}
	return fs.FileMode(n), nil
}

// maxGID is the largest group id a file can have: (gid_t)-1 means "no change" to chown.
const maxGID = 1<<32 - 2

// LookupGroup returns the gid of group: digits are a gid, used as they are (a container's gid
// need not be in /etc/group); anything else is a group name, looked up in the system's group
// database.
func LookupGroup(group string) (int, error) {
	if group == "" {
		return 0, errors.New("server: the socket group is empty")
	}
	if isDigits(group) {
		gid, err := strconv.ParseUint(group, 10, 64)
		if err != nil || gid > maxGID {
			return 0, fmt.Errorf("server: socket group %s is not a valid gid", group)
		}
		return int(gid), nil
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return 0, fmt.Errorf("server: socket group %q: %w", group, err)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return 0, fmt.Errorf("server: socket group %q has gid %q, not a number", group, g.Gid)
	}
	return gid, nil
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// CheckSocketAccess refuses socket access settings that cannot apply to the gRPC address addr:
// any on a TCP address, a group without a mode (the umask's mode gives the group no write
// permission, so its members could not connect), and a group that does not exist.
func CheckSocketAccess(addr string, a SocketAccess) error {
	if !a.set() {
		return nil
	}
	network, _, err := SplitAddr(addr)
	if err != nil {
		return err
	}
	if network != "unix" {
		return fmt.Errorf("server: a socket mode and group apply to a unix socket (unix:/path), not to %s", addr)
	}
	if a.Mode&^fs.ModePerm != 0 || (a.Group != "" && a.Mode == 0) {
		if a.Mode == 0 {
			return errors.New("server: a socket group needs a socket mode that lets the group write, like 0660")
		}
		return fmt.Errorf("server: socket mode %v is more than permission bits", a.Mode)
	}
	if a.Group != "" {
		if _, err := LookupGroup(a.Group); err != nil {
			return err
		}
	}
	return nil
}

// listenUnix listens on the unix socket path. With access set, the socket appears at path with
// its final mode and group already, so that there is no moment at which anyone else could
// connect: it is created in a new directory only this process can enter, given its mode and
// group there, and then linked to path (which fails if anything took path meanwhile).
func listenUnix(path string, access SocketAccess) (net.Listener, error) {
	if !access.set() {
		l, err := net.Listen("unix", path)
		if err != nil {
			return nil, fmt.Errorf("server: gRPC listener: %w", err)
		}
		return l, nil
	}
	gid := -1
	if access.Group != "" {
		var err error
		if gid, err = LookupGroup(access.Group); err != nil {
			return nil, err
		}
	}
	dir, err := os.MkdirTemp(filepath.Dir(path), ".agentauthz-")
	if err != nil {
		return nil, fmt.Errorf("server: creating the socket: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o700); err != nil { // whatever the umask and default ACLs said
		return nil, fmt.Errorf("server: creating the socket: %w", err)
	}
	tmp := filepath.Join(dir, "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("server: creating the socket as %s, %d bytes longer than %s, before giving it its mode and group (a unix socket's path is limited to about 100 bytes): %w",
			tmp, len(tmp)-len(path), path, err)
	}
	l.SetUnlinkOnClose(false) // its name moves to path; Close removes that
	fail := func(err error) (net.Listener, error) {
		l.Close()
		return nil, err
	}
	if err := os.Chmod(tmp, access.Mode); err != nil {
		return fail(fmt.Errorf("server: setting the socket's mode: %w", err))
	}
	if gid >= 0 {
		if err := os.Lchown(tmp, -1, gid); err != nil {
			return fail(fmt.Errorf("server: giving the socket to group %s (agentauthz must be a member of it): %w", access.Group, err))
		}
	}
	if err := os.Link(tmp, path); err != nil {
		return fail(fmt.Errorf("server: placing the socket at %s: %w", path, err))
	}
	st, err := os.Lstat(path)
	if err != nil {
		os.Remove(path)
		return fail(fmt.Errorf("server: %w", err))
	}
	return &unixListener{UnixListener: l, path: path, file: st}, nil
}

// unixListener is a unix socket listener known by path, a name given to the socket after it
// was bound. Close removes path, as net.UnixListener removes the name it bound.
type unixListener struct {
	*net.UnixListener
	path string
	file os.FileInfo
}

func (l *unixListener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

func (l *unixListener) Close() error {
	err := l.UnixListener.Close()
	// Only the socket this listener placed: a later one at path is someone else's.
	if st, statErr := os.Lstat(l.path); statErr == nil && os.SameFile(st, l.file) {
		os.Remove(l.path)
	}
	return err
}

// removeStaleSocket removes a unix socket left by a previous run, but nothing else.
func removeStaleSocket(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	if st.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("server: %s exists and is not a socket", path)
	}
	return os.Remove(path)
}
