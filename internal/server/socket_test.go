package server_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/agentauthz/agentauthz/internal/server"
	"github.com/agentauthz/agentauthz/internal/servertest"
)

// socketClientEnv, when set to a socket path, makes the test binary a client of that socket
// (socketClient) instead of running tests: the process another user runs.
const socketClientEnv = "AGENTAUTHZ_TEST_SOCKET_CLIENT"

// Exit codes of socketClient.
const (
	clientServing = 0  // connected, and gRPC health says SERVING
	clientFailed  = 1  // anything else
	clientRefused = 13 // connect(2) refused with EACCES: no write permission on the socket
)

func TestMain(m *testing.M) {
	if path := os.Getenv(socketClientEnv); path != "" {
		os.Exit(socketClient(path, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// socketClient connects to the unix socket at path as this process's user and asks gRPC health
// about the Authorization service.
func socketClient(path string, stdout, stderr io.Writer) int {
	c, err := net.Dial("unix", path)
	if errors.Is(err, syscall.EACCES) {
		fmt.Fprintf(stderr, "connect: %v\n", err)
		return clientRefused
	}
	if err != nil {
		fmt.Fprintf(stderr, "connect: %v\n", err)
		return clientFailed
	}
	c.Close()
	conn, err := grpc.NewClient("unix:"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintf(stderr, "grpc.NewClient: %v\n", err)
		return clientFailed
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: authv3.Authorization_ServiceDesc.ServiceName})
	if err != nil {
		fmt.Fprintf(stderr, "health: %v\n", err)
		return clientFailed
	}
	fmt.Fprintln(stdout, resp.GetStatus())
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return clientFailed
	}
	return clientServing
}

func TestParseSocketMode(t *testing.T) {
	for in, want := range map[string]fs.FileMode{"0660": 0o660, "660": 0o660, "0600": 0o600, "0777": 0o777, "0002": 0o002, "007": 0o007} {
		if got, err := server.ParseSocketMode(in); err != nil || got != want {
			t.Errorf("ParseSocketMode(%q) = %04o, %v; want %04o", in, got, err, want)
		}
	}
	for in, why := range map[string]string{
		"":      "three or four octal digits",
		"66":    "three or four octal digits",
		"06600": "three or four octal digits",
		"0o660": "three or four octal digits",
		"0x1b0": "three or four octal digits",
		"0680":  "three or four octal digits",
		"ug=rw": "three or four octal digits",
		" 660":  "three or four octal digits",
		"+660":  "three or four octal digits",
		"-660":  "three or four octal digits",
		"1660":  "setuid, setgid or sticky",
		"4755":  "setuid, setgid or sticky",
		"0000":  "nobody",
		"000":   "nobody",
		"０６６０":  "three or four octal digits",
	} {
		got, err := server.ParseSocketMode(in)
		if err == nil || !strings.Contains(err.Error(), why) || !strings.HasPrefix(err.Error(), "server: ") {
			t.Errorf("ParseSocketMode(%q) = %04o, %v; want an error saying %q", in, got, err, why)
		}
	}
}

// FuzzParseSocketMode: whatever the input, a mode is permission bits only, nonzero, and what
// the input says in octal; anything else is an error, never a panic.
func FuzzParseSocketMode(f *testing.F) {
	for _, s := range []string{"0660", "660", "0777", "1660", "0o660", "", "0000", "7777", "00660", "٠٦٦٠"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		mode, err := server.ParseSocketMode(s)
		if err != nil {
			if mode != 0 {
				t.Errorf("ParseSocketMode(%q) = %04o with error %v", s, mode, err)
			}
			return
		}
		if mode == 0 || mode&^fs.ModePerm != 0 {
			t.Errorf("ParseSocketMode(%q) = %v: not permission bits", s, mode)
		}
		n, perr := strconv.ParseUint(s, 8, 32)
		if perr != nil || fs.FileMode(n) != mode || len(s) < 3 || len(s) > 4 {
			t.Errorf("ParseSocketMode(%q) = %04o, but the input reads as %o (%v)", s, mode, n, perr)
		}
	})
}

func TestLookupGroup(t *testing.T) {
	for in, want := range map[string]int{"0": 0, "10001": 10001, "4294967294": 4294967294, "00042": 42} {
		if got, err := server.LookupGroup(in); err != nil || got != want {
			t.Errorf("LookupGroup(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if g, err := user.LookupGroupId("0"); err == nil {
		if got, err := server.LookupGroup(g.Name); err != nil || got != 0 {
			t.Errorf("LookupGroup(%q) = %d, %v; want 0", g.Name, got, err)
		}
	}
	for _, in := range []string{"", "4294967295", "99999999999999999999", "-1", "no-such-group-agentauthz"} {
		if got, err := server.LookupGroup(in); err == nil || !strings.HasPrefix(err.Error(), "server: ") {
			t.Errorf("LookupGroup(%q) = %d, %v; want an error", in, got, err)
		}
	}
}

// FuzzLookupGroup: digits are a gid when they fit one; nothing panics.
func FuzzLookupGroup(f *testing.F) {
	for _, s := range []string{"0", "65532", "4294967295", "root", "", "-1", "1e3", "0x10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		gid, err := server.LookupGroup(s)
		if err != nil {
			return
		}
		if gid < 0 || gid > 1<<32-2 {
			t.Errorf("LookupGroup(%q) = %d: not a gid", s, gid)
		}
		if n, perr := strconv.ParseUint(s, 10, 64); perr == nil && int(n) != gid {
			t.Errorf("LookupGroup(%q) = %d, want the number itself", s, gid)
		}
	})
}

func TestCheckSocketAccess(t *testing.T) {
	sock := "unix:" + filepath.Join(t.TempDir(), "a.sock")
	for _, tc := range []struct {
		addr   string
		access server.SocketAccess
		want   string // empty: accepted
	}{
		{"127.0.0.1:9001", server.SocketAccess{}, ""},
		{sock, server.SocketAccess{}, ""},
		{sock, server.SocketAccess{Mode: 0o660}, ""},
		{sock, server.SocketAccess{Mode: 0o660, Group: "10001"}, ""},
		{"127.0.0.1:9001", server.SocketAccess{Mode: 0o660}, "apply to a unix socket"},
		{"127.0.0.1:9001", server.SocketAccess{Group: "10001"}, "apply to a unix socket"},
		{sock, server.SocketAccess{Group: "10001"}, "needs a socket mode"},
		{sock, server.SocketAccess{Mode: fs.ModeSetgid | 0o660}, "more than permission bits"},
		{sock, server.SocketAccess{Mode: 0o660, Group: "no-such-group-agentauthz"}, "no-such-group-agentauthz"},
		{"unix:", server.SocketAccess{Mode: 0o660}, "needs a path"},
	} {
		err := server.CheckSocketAccess(tc.addr, tc.access)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("CheckSocketAccess(%q, %+v) = %v; want nil", tc.addr, tc.access, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("CheckSocketAccess(%q, %+v) = %v; want an error saying %q", tc.addr, tc.access, err, tc.want)
		}
	}
	// server.Start refuses the same, before it listens on anything.
	store, _ := servertest.DemoStore(t, upstreamToken)
	srv, err := server.Start(server.Config{GRPCAddr: "127.0.0.1:0", GRPCSocket: server.SocketAccess{Mode: 0o660}, Store: store})
	if err == nil {
		srv.Shutdown()
		t.Fatal("server.Start with a socket mode on a TCP address succeeded")
	}
}

// TestUnixSocketMode: the socket has exactly the mode asked for (not one the umask narrowed),
// answers Check, and is removed at shutdown with nothing left beside it.
func TestUnixSocketMode(t *testing.T) {
	store, _ := servertest.DemoStore(t, upstreamToken)
	for _, mode := range []fs.FileMode{0o600, 0o660, 0o666} {
		t.Run(fmt.Sprintf("%04o", uint32(mode)), func(t *testing.T) {
			dir := t.TempDir()
			sock := filepath.Join(dir, "authz.sock")
			srv := servertest.Start(t, server.Config{GRPCAddr: "unix:" + sock, GRPCSocket: server.SocketAccess{Mode: mode}, Store: store})
			if got := srv.GRPCAddr().String(); got != sock {
				t.Errorf("GRPCAddr() = %q, want %q", got, sock)
			}
			st, err := os.Lstat(sock)
			if err != nil || st.Mode()&fs.ModeSocket == 0 {
				t.Fatalf("%s is not a socket: %v", sock, err)
			}
			if st.Mode().Perm() != mode {
				t.Errorf("the socket's mode is %04o, want %04o", uint32(st.Mode().Perm()), uint32(mode))
			}
			if entries := dirNames(t, dir); len(entries) != 1 {
				t.Errorf("beside the socket: %v; want only authz.sock", entries)
			}
			client := servertest.Client(t, srv)
			if a := servertest.Check(t, client, getTicket(helpdesk)); !a.Allow || a.Rule != "get-ticket" {
				t.Errorf("Check over the socket = %+v, want allow by get-ticket", a)
			}
			srv.Shutdown()
			if entries := dirNames(t, dir); len(entries) != 0 {
				t.Errorf("after Shutdown: %v; want the socket removed", entries)
			}
		})
	}
}

// TestUnixSocketGroupOwnGroup: any user may give the socket to a group it belongs to, here its
// own primary group, named by gid.
func TestUnixSocketGroupOwnGroup(t *testing.T) {
	store, _ := servertest.DemoStore(t, upstreamToken)
	sock := filepath.Join(t.TempDir(), "authz.sock")
	gid := os.Getegid()
	servertest.Start(t, server.Config{GRPCAddr: "unix:" + sock, GRPCSocket: server.SocketAccess{Mode: 0o660, Group: strconv.Itoa(gid)}, Store: store})
	st, err := os.Lstat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Sys().(*syscall.Stat_t).Gid; int(got) != gid || st.Mode().Perm() != 0o660 {
		t.Errorf("socket group %d, mode %04o; want %d, 0660", got, uint32(st.Mode().Perm()), gid)
	}
}

// TestUnixSocketNotAFile: with a mode set too, a file at the socket path that is not a socket
// is refused and left as it is, with nothing left beside it.
func TestUnixSocketNotAFile(t *testing.T) {
	store, _ := servertest.DemoStore(t, upstreamToken)
	dir := t.TempDir()
	regular := filepath.Join(dir, "authz.sock")
	if err := os.WriteFile(regular, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := server.Start(server.Config{GRPCAddr: "unix:" + regular, GRPCSocket: server.SocketAccess{Mode: 0o660}, Store: store})
	if err == nil {
		srv.Shutdown()
		t.Fatal("server.Start over a regular file succeeded")
	}
	if data, err := os.ReadFile(regular); err != nil || string(data) != "precious" {
		t.Errorf("the refused file was touched: %q, %v", data, err)
	}
	if entries := dirNames(t, dir); len(entries) != 1 {
		t.Errorf("left beside the file: %v", entries)
	}
}

// TestUnixSocketGroupAccess: with mode 0660 and a group, a process of another user in that group
// connects and is answered; a process of a user outside it is refused by the kernel. It creates
// a group and two users for the test, and removes them after.
func TestUnixSocketGroupAccess(t *testing.T) {
	requireRoot(t)
	group := newName(t)
	run(t, "groupadd", group)
	t.Cleanup(func() { run(t, "groupdel", group) })
	inside, outside := newName(t), newName(t)
	run(t, "useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "--groups", group, inside)
	t.Cleanup(func() { run(t, "userdel", inside) })
	run(t, "useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", outside)
	t.Cleanup(func() { run(t, "userdel", outside) })
	g, err := user.LookupGroup(group)
	if err != nil {
		t.Fatal(err)
	}

	// Every directory on the way must let the other users through; the socket file decides.
	dir := openDir(t)
	client := copyExecutable(t, dir)
	store, _ := servertest.DemoStore(t, upstreamToken)
	for _, named := range []string{group, g.Gid} {
		t.Run("group="+named, func(t *testing.T) {
			sock := filepath.Join(dir, "authz.sock")
			srv := servertest.Start(t, server.Config{GRPCAddr: "unix:" + sock, GRPCSocket: server.SocketAccess{Mode: 0o660, Group: named}, Store: store})
			st, err := os.Lstat(sock)
			if err != nil {
				t.Fatal(err)
			}
			if got := strconv.Itoa(int(st.Sys().(*syscall.Stat_t).Gid)); got != g.Gid || st.Mode().Perm() != 0o660 {
				t.Fatalf("socket group %s, mode %04o; want %s, 0660", got, uint32(st.Mode().Perm()), g.Gid)
			}
			code, stdout, stderr := runAs(t, inside, client, sock)
			if code != clientServing || strings.TrimSpace(stdout) != "SERVING" {
				t.Errorf("%s (in group %s): exit %d, stdout %q, stderr %q; want SERVING", inside, group, code, stdout, stderr)
			}
			code, stdout, stderr = runAs(t, outside, client, sock)
			if code != clientRefused || !strings.Contains(stderr, "permission denied") {
				t.Errorf("%s (not in group %s): exit %d, stdout %q, stderr %q; want connect refused with EACCES", outside, group, code, stdout, stderr)
			}
			srv.Shutdown()
		})
	}
}

// requireRoot skips a test that must create users, unless CI is set: there it must run.
func requireRoot(t *testing.T) {
	t.Helper()
	missing := ""
	if os.Geteuid() != 0 {
		missing = "root (it creates a temporary user and group)"
	} else {
		for _, tool := range []string{"useradd", "groupadd", "userdel", "groupdel"} {
			if _, err := exec.LookPath(tool); err != nil {
				missing = tool + " (Debian's passwd package)"
				break
			}
		}
	}
	if missing == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("this test needs %s, and CI is set", missing)
	}
	t.Skipf("needs %s; CI runs it as root", missing)
}

// newName is a fresh user or group name.
func newName(t *testing.T) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "aztest" + hex.EncodeToString(b[:])
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// openDir is a new directory every user may enter and read, removed when the test ends.
func openDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "agentauthz-socket-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// copyExecutable copies the test binary into dir, where other users can run it (go test builds
// it in a directory only its user may enter).
func copyExecutable(t *testing.T, dir string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "socket-client")
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

// runAs runs the test binary as socketClient of sock, as user name with that user's groups.
func runAs(t *testing.T, name, binary, sock string) (code int, stdout, stderr string) {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	gids, err := u.GroupIds()
	if err != nil {
		t.Fatal(err)
	}
	var groups []uint32
	for _, g := range gids {
		n, err := strconv.ParseUint(g, 10, 32)
		if err != nil {
			t.Fatal(err)
		}
		groups = append(groups, uint32(n))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary)
	cmd.Env = []string{socketClientEnv + "=" + sock, "PATH=/usr/bin:/bin"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups}}
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("running %s as %s: %v", binary, name, err)
	}
	return code, out.String(), errOut.String()
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
