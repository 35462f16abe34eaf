package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// exitCode carries a run function's exit code through cobra. The function has printed what
// went wrong already; execute prints nothing more.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// usageError is a mistake in the command line, printed as one line naming the command.
type usageError struct {
	cmd string // "agentauthz check"
	msg string
}

func (e *usageError) Error() string { return e.cmd + ": " + e.msg }

// runE adapts a run function, which prints its own output and returns an exit code, to cobra.
func runE(f func(cmd *cobra.Command, args []string) int) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if code := f(cmd, args); code != exitOK {
			return exitCode(code)
		}
		return nil
	}
}

// execute runs the command tree and turns what it returns into an exit code, printing one line
// for a mistake in the command line: never a usage dump, never an error twice.
func execute(root *cobra.Command, stderr io.Writer) int {
	err := root.Execute()
	var code exitCode
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &code):
		return int(code)
	case errors.As(err, &ue):
		fmt.Fprintln(stderr, joinLines(ue.Error()))
	default:
		// cobra's own: a help topic that does not exist, a completion it cannot make.
		fmt.Fprintf(stderr, "agentauthz: %s\n", joinLines(err.Error()))
	}
	return exitUsage
}

// joinLines joins the lines of s, so that an error is one line whatever wrapped it.
func joinLines(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// groupRun is the run function of a command that only groups others (audit, approvals,
// openapi, completion): without a command, or with one it does not have, it says so in one
// line, suggesting the nearest name.
func groupRun(cmd *cobra.Command, args []string) error {
	kind := "subcommand"
	if !cmd.HasParent() {
		kind = "command"
	}
	var names []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			names = append(names, c.Name())
		}
	}
	if len(args) == 0 {
		return &usageError{cmd.CommandPath(), fmt.Sprintf("name a %s: %s; run %s --help", kind, strings.Join(names, ", "), cmd.CommandPath())}
	}
	msg := fmt.Sprintf("unknown %s %q", kind, args[0])
	if s := suggest(args[0], names); s != "" {
		msg += " (did you mean " + s + "?)"
	}
	return &usageError{cmd.CommandPath(), msg + "; run " + cmd.CommandPath() + " --help"}
}

// singleDashLong refuses a long flag written with one dash (-policy), as Go's flag package,
// which this command used before, accepted: here -policy is -p -o -l ..., and reading it so
// would be a guess. It names the flag to write instead.
func singleDashLong(root *cobra.Command, args []string) error {
	cmd, _, err := root.Find(args)
	if err != nil {
		return nil // cobra says what is wrong
	}
	lookup := func(name string) *pflag.Flag {
		if f := cmd.Flags().Lookup(name); f != nil {
			return f
		}
		return cmd.InheritedFlags().Lookup(name)
	}
	// cobra adds these when the command runs; they are known here already.
	cmd.InitDefaultHelpFlag()
	if !cmd.HasParent() {
		cmd.InitDefaultVersionFlag()
	}
	for i, a := range args {
		if a == "--" {
			return nil
		}
		if i > 0 {
			// The value of the flag before it, however it looks.
			prev, _, hasValue := strings.Cut(args[i-1], "=")
			if name, ok := strings.CutPrefix(prev, "--"); ok && !hasValue {
				if f := lookup(name); f != nil && f.NoOptDefVal == "" {
					continue
				}
			}
		}
		name, ok := strings.CutPrefix(a, "-")
		if !ok || strings.HasPrefix(name, "-") {
			continue
		}
		name, _, _ = strings.Cut(name, "=")
		if len(name) < 2 {
			continue
		}
		if f := lookup(name); f != nil && !f.Hidden {
			return &usageError{cmd.CommandPath(), fmt.Sprintf("unknown flag -%s: a long flag takes two dashes: --%s", name, name)}
		}
	}
	return nil
}

// flagError says in one line what is wrong with a flag, in the words of the command line (no
// Go parse errors), with the nearest flag for a mistyped one.
func flagError(cmd *cobra.Command, err error) error {
	return &usageError{cmd.CommandPath(), flagMessage(cmd.Flags(), err)}
}

func flagMessage(fs *pflag.FlagSet, err error) string {
	var notExist *pflag.NotExistError
	var noValue *pflag.ValueRequiredError
	var invalid *pflag.InvalidValueError
	switch {
	case errors.As(err, &notExist):
		if group := notExist.GetSpecifiedShortnames(); len(group) > 1 {
			// -policy: Go's flag package read it as --policy; here it is -p -o -l ... .
			name, _, _ := strings.Cut(group, "=")
			if f := fs.Lookup(name); f != nil && !f.Hidden {
				return fmt.Sprintf("unknown flag -%s: a long flag takes two dashes: --%s", name, name)
			}
			return fmt.Sprintf("unknown flag -%s%s", group, flagSuggestion(fs, name))
		}
		if len(notExist.GetSpecifiedShortnames()) == 1 {
			return fmt.Sprintf("unknown flag -%s", notExist.GetSpecifiedName())
		}
		name := notExist.GetSpecifiedName()
		return fmt.Sprintf("unknown flag --%s%s", name, flagSuggestion(fs, name))
	case errors.As(err, &noValue):
		return fmt.Sprintf("--%s needs a value", noValue.GetFlag().Name)
	case errors.As(err, &invalid):
		f := invalid.GetFlag()
		var why string
		switch f.Value.Type() {
		case "int", "int64", "uint", "uint64":
			why = "want a whole number"
		case "duration":
			why = "want a duration, like 30s, 5m or 1h30m"
		case "bool":
			why = "want true or false"
		default:
			why = errors.Unwrap(err).Error()
		}
		return fmt.Sprintf("--%s %q: %s", f.Name, invalid.GetValue(), why)
	}
	return err.Error()
}

// flagSuggestion is "; did you mean --NAME?" for the flag of fs nearest to name, or "".
func flagSuggestion(fs *pflag.FlagSet, name string) string {
	var names []string
	fs.VisitAll(func(f *pflag.Flag) {
		if !f.Hidden {
			names = append(names, f.Name)
		}
	})
	if s := suggest(name, names); s != "" {
		return " (did you mean --" + s + "?)"
	}
	return ""
}

// suggest returns the candidate nearest to typed, if it is near enough to be what was meant: at
// most a third of its letters different (two at least), or typed is a prefix of it. Ties go to
// the first in name order.
func suggest(typed string, candidates []string) string {
	typed = strings.ToLower(typed)
	best, bestDist := "", -1
	sorted := slices.Clone(candidates)
	slices.Sort(sorted)
	for _, c := range sorted {
		d := levenshtein(typed, strings.ToLower(c))
		if strings.HasPrefix(c, typed) && len(typed) >= 3 {
			d = min(d, 1)
		}
		if bestDist < 0 || d < bestDist {
			best, bestDist = c, d
		}
	}
	if bestDist < 0 || bestDist > max(2, len(typed)/3) || bestDist >= len(typed) {
		return ""
	}
	return best
}

// levenshtein is the edit distance between a and b: the fewest insertions, deletions and
// substitutions of bytes that turn one into the other.
func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// usage writes a command's usage: how to call it, its commands, its flags with their help
// wrapped to fit a terminal.
func usage(c *cobra.Command) error {
	var b strings.Builder
	b.WriteString("Usage:\n")
	if c.Runnable() && !c.HasAvailableSubCommands() {
		fmt.Fprintf(&b, "  %s\n", c.UseLine())
	}
	if c.HasAvailableSubCommands() {
		fmt.Fprintf(&b, "  %s COMMAND [flags]\n", c.CommandPath())
	}
	if c.HasExample() {
		fmt.Fprintf(&b, "\nExamples:\n%s\n", c.Example)
	}
	if c.HasAvailableSubCommands() {
		b.WriteString("\nCommands:\n")
		for _, s := range c.Commands() {
			if s.IsAvailableCommand() || s.Name() == "help" {
				fmt.Fprintf(&b, "  %-*s %s\n", c.NamePadding(), s.Name(), s.Short)
			}
		}
	}
	if c.HasAvailableLocalFlags() {
		fmt.Fprintf(&b, "\nFlags:\n%s", c.LocalFlags().FlagUsagesWrapped(100))
	}
	if c.HasAvailableInheritedFlags() {
		fmt.Fprintf(&b, "\nFlags of %s:\n%s", c.Parent().CommandPath(), c.InheritedFlags().FlagUsagesWrapped(100))
	}
	if c.HasAvailableSubCommands() {
		fmt.Fprintf(&b, "\nRun \"%s COMMAND --help\" for a command's flags.\n", c.CommandPath())
	}
	_, err := io.WriteString(c.OutOrStderr(), b.String())
	return err
}
