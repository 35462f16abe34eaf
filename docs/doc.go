// Package docs holds agentauthz's documentation for the people who write policy and run it:
// policy-reference.md, writing-policy.md, cli.md, mcp.md, authzen.md and operating.md.
//
// It has no code of its own. Its tests keep the documents true to the product:
//
//   - TestPolicyReference generates policy-reference.md from the comments and validation rules
//     of the policy schema (proto/agentauthz/policy/v1/policy.proto) and fails when the
//     committed page differs;
//   - TestGuideSnippets loads every policy writing-policy.md shows, and finds every shorter
//     YAML snippet in one of them;
//   - TestGuideFiles compares the files the guide shows with testdata/;
//   - TestGuideCommands builds agentauthz, runs every command the guide shows and compares what
//     it prints;
//   - TestCLICommands does the same for the command-line reference, cli.md, and checks the exit
//     status each "$ echo $?" shows; TestCLIExitTable checks its table of exit statuses;
//   - TestArchitectureNames finds every Go name ARCHITECTURE.md mentions in the package it
//     names;
//   - TestGuideCodes and TestReadmeCodes compare the guide's table of reason codes and the
//     README's table of statuses with the code table of package decision, and
//     TestOperatingFailureCodes the failure codes operating.md tells operators to alert on;
//   - TestMCPAnswerTable compares mcp.md's table of what an MCP client gets for each refusal
//     with what package decision answers.
//
// After changing the schema or the code table, rewrite the reference and the code tables with
//
//	go test ./docs -update
package docs
