package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresEnv names the variable that points the tests at an existing PostgreSQL server: a
// DSN (URL or keyword/value) of a database where the user may create schemas.
const PostgresEnv = "AGENTAUTHZ_TEST_POSTGRES_DSN"

// PostgresServer is a real PostgreSQL server for tests.
type PostgresServer struct {
	dsn     string
	private bool
}

// Private reports whether the server is one the tests started themselves.
func (s *PostgresServer) Private() bool { return s.private }

// StartPostgres returns the server PostgresEnv names or, when it is unset, starts a private
// one in t.TempDir() from Debian's packages (/usr/lib/postgresql/*/bin), stopped when t ends;
// as root it runs the server as the postgres user. When neither is possible it skips t, or,
// with CI set in the environment, fails it: CI must test against a real database.
func StartPostgres(t testing.TB) *PostgresServer {
	t.Helper()
	if dsn := os.Getenv(PostgresEnv); dsn != "" {
		return &PostgresServer{dsn: dsn}
	}
	dsn, err := startPrivate(t)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("PostgreSQL not available, and CI is set: %v", err)
		}
		t.Skipf("PostgreSQL not available: %v (set %s, or install Debian's postgresql package)", err, PostgresEnv)
	}
	return &PostgresServer{dsn: dsn, private: true}
}

// FreshDSN creates an empty schema for t, dropped when t ends, and returns the server's DSN
// with search_path set to it.
func (s *PostgresServer) FreshDSN(t testing.TB) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "agentauthz_test_" + hex.EncodeToString(b[:])
	do := func(ctx context.Context, sql string) error {
		conn, err := pgx.Connect(ctx, s.dsn)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := do(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatalf("create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := do(ctx, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return WithDSNParam(s.dsn, "search_path", schema)
}

// WithDSNParam returns dsn, a URL or keyword/value string, with key set to value. value must
// need no quoting.
func WithDSNParam(dsn, key, value string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		if u, err := url.Parse(dsn); err == nil {
			q := u.Query()
			q.Set(key, value)
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	return strings.TrimSpace(dsn) + " " + key + "=" + value // a later key wins
}

// startPrivate initialises and starts a throwaway server in t.TempDir(), listening only on a
// unix socket there, and returns its DSN.
func startPrivate(t testing.TB) (string, error) {
	bin, err := postgresBin()
	if err != nil {
		return "", err
	}
	dir := t.TempDir()
	asUser := func(argv []string) []string { return argv } // runs argv as the server's user
	var uid, gid int
	if os.Geteuid() == 0 {
		// initdb and postgres refuse to run as root.
		u, err := user.Lookup("postgres")
		if err != nil {
			return "", fmt.Errorf("running as root and no postgres user to run the server as: %w", err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return "", err
		}
		// Let that user reach dir: the test's own temporary directories are 0700.
		for p := filepath.Dir(dir); strings.HasPrefix(p, os.TempDir()+string(filepath.Separator)); p = filepath.Dir(p) {
			if fi, err := os.Stat(p); err == nil && fi.Mode().Perm()&0o001 == 0 {
				if err := os.Chmod(p, fi.Mode().Perm()|0o011); err != nil {
					return "", err
				}
			}
		}
		if path, err := exec.LookPath("runuser"); err == nil {
			asUser = func(argv []string) []string { return append([]string{path, "-u", "postgres", "--"}, argv...) }
		} else if path, err := exec.LookPath("su"); err == nil {
			asUser = func(argv []string) []string {
				quoted := make([]string, len(argv))
				for i, a := range argv {
					quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
				}
				return []string{path, "postgres", "-s", "/bin/sh", "-c", "exec " + strings.Join(quoted, " ")}
			}
		} else {
			return "", fmt.Errorf("running as root and neither runuser nor su to run the server as postgres")
		}
	}
	run := func(name string, args ...string) error {
		argv := asUser(append([]string{filepath.Join(bin, name)}, args...))
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Dir = dir
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %v\n%s", strings.Join(argv, " "), err, out.Bytes())
		}
		return nil
	}

	data, log := filepath.Join(dir, "data"), filepath.Join(dir, "server.log")
	if err := run("initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"); err != nil {
		return "", err
	}
	// A unix socket's path is limited to about 100 bytes; the test's directory may be deeper.
	sock := dir
	if len(sock)+len("/.s.PGSQL.5432") > 100 {
		if sock, err = os.MkdirTemp("", "pg"); err != nil {
			return "", err
		}
		t.Cleanup(func() { _ = os.RemoveAll(sock) })
		if os.Geteuid() == 0 {
			if err := os.Chown(sock, uid, gid); err != nil {
				return "", err
			}
		}
	}
	opts := strings.Join([]string{
		"-k " + sock,
		"-c listen_addresses=''",
		"-c max_connections=200",
		// A throwaway server: durability buys nothing.
		"-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off",
	}, " ")
	if err := run("pg_ctl", "-D", data, "-l", log, "-o", opts, "-w", "-t", "60", "start"); err != nil {
		logText, _ := os.ReadFile(log)
		return "", fmt.Errorf("%v\nserver log:\n%s", err, logText)
	}
	t.Cleanup(func() {
		if err := run("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"); err != nil {
			t.Errorf("stop the test PostgreSQL: %v", err)
		}
	})
	return fmt.Sprintf("host=%s port=5432 user=postgres dbname=postgres sslmode=disable", sock), nil
}

// postgresBin finds the directory of initdb and pg_ctl: Debian's newest version, or PATH.
func postgresBin() (string, error) {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	var found []string
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "pg_ctl")) {
			found = append(found, d)
		}
	}
	if len(found) > 0 {
		version := func(d string) int { n, _ := strconv.Atoi(filepath.Base(filepath.Dir(d))); return n }
		sort.Slice(found, func(i, j int) bool { return version(found[i]) > version(found[j]) })
		return found[0], nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := exec.LookPath("pg_ctl"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	return "", fmt.Errorf("no initdb and pg_ctl in /usr/lib/postgresql/*/bin or on PATH")
}

func isExec(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && !fi.IsDir() && fi.Mode().Perm()&0o111 != 0
}
