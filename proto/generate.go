// Package proto holds the protobuf schemas of agentauthz and their generated Go code.
//
// Regenerate after editing a .proto file (buf and protoc-gen-go on PATH, see .ci/run):
//
//	go generate ./proto
package proto

//go:generate sh -c "./deps.sh && cd .. && buf lint && buf generate"
