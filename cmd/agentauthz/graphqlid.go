package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/agentauthz/agentauthz/policy/gqlcheck"
)

// runGraphQLID prints the persisted-operation id of GraphQL documents, for a GraphQL API's
// persisted list: agentauthz graphql-id FILE...
func runGraphQLID(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("graphql-id", flag.ContinueOnError)
	if ok, code := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "agentauthz graphql-id: name at least one file holding a GraphQL document")
		return exitUsage
	}
	status := exitOK
	for _, name := range fs.Args() {
		doc, err := os.ReadFile(name)
		if err != nil {
			fmt.Fprintf(stderr, "agentauthz graphql-id: %v\n", err)
			status = exitUsage
			continue
		}
		id, err := gqlcheck.PersistedID(string(doc))
		if err != nil {
			fmt.Fprintf(stderr, "agentauthz graphql-id: %s: %v\n", name, err)
			status = exitUsage
			continue
		}
		fmt.Fprintf(stdout, "%s  %s\n", id, name)
	}
	return status
}
