package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"

	"github.com/bufbuild/protocompile"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	// buf/validate/validate.proto, which helpdesk.proto imports, resolves from here.
	_ "buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
)

// HelpdeskProto is the demo policy's helpdesk.proto, compiled as the policy compiles it when it
// loads: the messages agentauthz checks and, for the helpdesk API's gRPC service (Helpdesk), the
// messages the service and its clients exchange. One file, so the demo's server, its clients and
// the policy cannot disagree.
func HelpdeskProto() (protoreflect.FileDescriptor, error) {
	comp := protocompile.Compiler{Resolver: protocompile.WithStandardImports(protocompile.ResolverFunc(
		func(p string) (protocompile.SearchResult, error) {
			if fd, err := protoregistry.GlobalFiles.FindFileByPath(p); err == nil {
				return protocompile.SearchResult{Desc: fd}, nil
			}
			data, err := fs.ReadFile(Files, path.Join(Dir, p))
			if err != nil {
				return protocompile.SearchResult{}, err
			}
			return protocompile.SearchResult{Source: bytes.NewReader(data)}, nil
		}))}
	files, err := comp.Compile(context.Background(), "helpdesk.proto")
	if err != nil {
		return nil, fmt.Errorf("demo: helpdesk.proto: %w", err)
	}
	if len(files) != 1 {
		return nil, errors.New("demo: helpdesk.proto did not compile to one file")
	}
	return files[0], nil
}
