package main

import (
	"fmt"
	"io"
	"os"

	"github.com/agentauthz/agentauthz/policy/gqlcheck"
)

// runGraphQLID prints the persisted-operation id of GraphQL documents, for a GraphQL API's
// persisted list: agentauthz graphql-id FILE...
func runGraphQLID(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "agentauthz graphql-id: name at least one file holding a GraphQL document")
		return exitUsage
	}
	status := exitOK
	for _, name := range args {
		doc, err := os.ReadFile(name)
		if err != nil {
			fmt.Fprintf(stderr, "agentauthz graphql-id: %v\n", err)
			status = exitError
			continue
		}
		id, err := gqlcheck.PersistedID(string(doc))
		if err != nil {
			fmt.Fprintf(stderr, "agentauthz graphql-id: %s: %v\n", name, err)
			status = exitError
			continue
		}
		fmt.Fprintf(stdout, "%s  %s\n", id, name)
	}
	return status
}
