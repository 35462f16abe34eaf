package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/agentauthz/agentauthz/internal/audit"
)

const auditVerifyLong = `Verify checks that audit logs are intact: every line a well-formed record whose hash matches
its content, each chained to the one before, its sequence number one more. Several files are
one chain, in the order given: rotated files oldest first (FILE.<16 digits> in name order),
then the current FILE, e.g.  agentauthz audit verify decisions.log.* decisions.log
Each must start where the previous one ends. For each file it prints
"FILE: ok, N records, head SEQ:HASH" or "FILE: line N: what is wrong", then where each --head
was found.

A HEAD is SEQ:HASH as agentauthz exports it (its log line "decision log head", the metric
agentauthz_decision_log_head_sequence, GET /v1/decision-log/head), a bare HASH or a bare SEQ.

  --key FILE    the key of a keyed log (serve --decision-log-key): every record must carry the
                HMAC of its content under it. Without it a keyed log cannot be verified.
  --from HEAD   where the first file starts (default: the start of a chain, seq 0, the
                genesis hash): the head of the file before it, to verify from the middle
  --head HEAD   a head exported earlier, out of the log writer's reach (repeatable): the chain
                must hold it, unchanged. Without one, records removed from the end of a log
                cannot be detected.

Exit status: 0 intact, 6 tampered (not intact), 1 an unreadable file, 2 bad usage or a keyed
log without --key.
`

// headFlag is a --from or --head: SEQ:HASH, HASH or SEQ, hex digits of either case.
type headFlag struct {
	heads []audit.Head
	one   bool // --from: given once
}

func (h *headFlag) String() string {
	var s []string
	for _, x := range h.heads {
		s = append(s, x.String())
	}
	return strings.Join(s, ",")
}

func (h *headFlag) Type() string { return "HEAD" }

func (h *headFlag) Set(s string) error {
	head, err := audit.ParseHead(s)
	if err != nil {
		return errors.New("want SEQ:HASH, a SHA-256 hash (64 hex digits) or a sequence number")
	}
	if h.one && len(h.heads) > 0 {
		return errors.New("given twice")
	}
	h.heads = append(h.heads, head)
	return nil
}

// auditVerifyOptions are the flags of agentauthz audit verify.
type auditVerifyOptions struct {
	from, heads headFlag
	keyFile     string
}

func (o *auditVerifyOptions) addFlags(fs *pflag.FlagSet) {
	o.from.one = true
	fs.Var(&o.from, "from", "the `HEAD` the first FILE starts from (default: the start of a chain)")
	fs.Var(&o.heads, "head", "a `HEAD` exported earlier that the chain must hold (repeatable)")
	fs.StringVar(&o.keyFile, "key", "", "the key `FILE` of a keyed log")
}

func runAuditVerify(o *auditVerifyOptions, files []string, stdout, stderr io.Writer) int {
	from, heads, keyFile := o.from, o.heads, &o.keyFile
	if len(files) == 0 {
		fmt.Fprintln(stderr, "agentauthz audit verify: name at least one audit log file")
		return exitUsage
	}
	opts := audit.VerifyOptions{Heads: heads.heads}
	if len(from.heads) > 0 {
		opts.From = from.heads[0]
	}
	if *keyFile != "" {
		key, err := audit.ReadKey(*keyFile)
		if err != nil {
			fmt.Fprintf(stderr, "agentauthz audit verify: --key: %v\n", err)
			return exitError
		}
		opts.Key = key
	}
	v, err := audit.NewVerifier(opts)
	if err != nil {
		fmt.Fprintf(stderr, "agentauthz audit verify: %v\n", err)
		return exitUsage
	}
	status := exitOK
	broken := "" // the file where the chain broke: later files cannot be linked to it
	lastOK := "" // the last file's line, printed once the heads are checked
	for i, name := range files {
		if broken != "" {
			fmt.Fprintf(stdout, "%s: not checked: it cannot be linked to %s, which did not verify\n", name, broken)
			continue
		}
		n, err := verifyFile(v, name)
		var ve *audit.VerifyError
		switch {
		case errors.As(err, &ve):
			fmt.Fprintf(stdout, "%s: %v\n", name, ve)
			status = exitTampered
			broken = name
		case errors.Is(err, audit.ErrKeyNeeded):
			fmt.Fprintf(stderr, "agentauthz audit verify: %s: the log is keyed (hmac): give its key with --key FILE\n", name)
			status = exitUsage
			broken = name
		case err != nil:
			fmt.Fprintf(stderr, "agentauthz audit verify: %v\n", err)
			status = exitError
			broken = name
		case i == len(files)-1:
			lastOK = fmt.Sprintf("%s: ok, %d records, head %s\n", name, n, v.Head())
		default:
			fmt.Fprintf(stdout, "%s: ok, %d records, head %s\n", name, n, v.Head())
		}
	}
	if broken != "" {
		return status
	}
	if err := v.Finish(); err != nil {
		var ve *audit.VerifyError
		if errors.As(err, &ve) {
			fmt.Fprintf(stdout, "%s: %v\n", files[len(files)-1], ve)
			return exitTampered
		}
		fmt.Fprint(stdout, lastOK)
		fmt.Fprintf(stderr, "agentauthz audit verify: %v\n", err)
		return exitError
	}
	fmt.Fprint(stdout, lastOK)
	for _, f := range v.Found() {
		if f.File == 0 {
			fmt.Fprintf(stdout, "head %s: where the chain starts\n", f.Head)
			continue
		}
		fmt.Fprintf(stdout, "head %s: held, %s line %d\n", f.Head, files[f.File-1], f.Line)
	}
	return status
}

func verifyFile(v *audit.Verifier, name string) (int, error) {
	f, err := os.Open(name)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	n, err := v.File(f)
	if err != nil && !errors.As(err, new(*audit.VerifyError)) && !errors.Is(err, audit.ErrKeyNeeded) {
		if _, ok := errors.AsType[*os.PathError](err); !ok {
			err = fmt.Errorf("%s: %w", name, err)
		}
	}
	return n, err
}
