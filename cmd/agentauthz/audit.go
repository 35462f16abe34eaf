package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/agentauthz/agentauthz/internal/audit"
)

const auditUsage = `Usage:
  agentauthz audit verify [--from HASH] [--head HASH] FILE...

verify checks that audit logs are intact: every line a well-formed record whose hash matches
its content, each chained to the one before. Several files are one chain, in the order given
(rotated files, oldest first): each must start where the previous one ends. For each file it
prints "FILE: ok, N records, head HASH" or "FILE: line N: what is wrong".

  --from HASH   the hash the first file starts from (default: the genesis hash, 64 zeros)
  --head HASH   the hash the last file must end with: a head recorded elsewhere earlier.
                Without it, records removed from the end of a log cannot be detected.

Exit code: 0 intact, 1 tampered, 2 bad usage or an unreadable file.
`

func runAudit(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "agentauthz audit: name a subcommand: verify; run agentauthz audit --help")
		return exitUsage
	}
	switch args[0] {
	case "verify":
		return runAuditVerify(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, auditUsage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "agentauthz audit: unknown subcommand %q; run agentauthz audit --help\n", args[0])
		return exitUsage
	}
}

// hashFlag is a --from or --head hash: 64 hex digits, either case.
type hashFlag string

func (h *hashFlag) String() string { return string(*h) }

func (h *hashFlag) Set(s string) error {
	s = strings.ToLower(strings.TrimSpace(s))
	if !audit.IsHash(s) {
		return errors.New("want a SHA-256 hash, 64 hex digits")
	}
	*h = hashFlag(s)
	return nil
}

func runAuditVerify(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	var from, head hashFlag
	fs.Var(&from, "from", "the `HASH` the first FILE starts from (default: the genesis hash)")
	fs.Var(&head, "head", "the `HASH` the last FILE must end with, recorded elsewhere earlier")
	if ok, code := parseFlags(fs, args, stderr); !ok {
		return code
	}
	files := fs.Args()
	if len(files) == 0 {
		fmt.Fprintln(stderr, "agentauthz audit verify: name at least one audit log file")
		return exitUsage
	}
	status := exitOK
	start := string(from)
	broken := "" // the file where the chain broke: later files cannot be linked to it
	for i, name := range files {
		if broken != "" {
			fmt.Fprintf(stdout, "%s: not checked: it cannot be linked to %s, which did not verify\n", name, broken)
			continue
		}
		opts := audit.VerifyOptions{From: start}
		if i == len(files)-1 {
			opts.Head = string(head)
		}
		n, h, err := verifyFile(name, opts)
		var ve *audit.VerifyError
		switch {
		case errors.As(err, &ve):
			fmt.Fprintf(stdout, "%s: %v\n", name, ve)
			status = max(status, exitDeny)
			broken = name
		case err != nil:
			fmt.Fprintf(stderr, "agentauthz audit verify: %v\n", err)
			status = exitUsage
			broken = name
		default:
			fmt.Fprintf(stdout, "%s: ok, %d records, head %s\n", name, n, h)
			start = h
		}
	}
	return status
}

func verifyFile(name string, opts audit.VerifyOptions) (int, string, error) {
	f, err := os.Open(name)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	n, h, err := audit.Verify(f, opts)
	if err != nil && !errors.As(err, new(*audit.VerifyError)) {
		if _, ok := errors.AsType[*os.PathError](err); !ok {
			err = fmt.Errorf("%s: %w", name, err)
		}
	}
	return n, h, err
}
