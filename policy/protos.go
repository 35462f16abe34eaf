package policy

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"

	"github.com/bufbuild/protocompile"
	"github.com/bufbuild/protocompile/reporter"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"

	// buf/validate/validate.proto, which policy .proto files import, resolves from here.
	_ "buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
)

// protoFiles compiles every source's proto_files into one set of message types. Imports resolve
// from agentauthz's own registry first (buf/validate/validate.proto, well-known types), so a
// policy directory cannot shadow them, then from the policy file's directory.
func (c *compiler) protoFiles(sources []source) {
	for i := range sources {
		src := &sources[i]
		names := src.policy.GetProtoFiles()
		if len(names) == 0 {
			continue
		}
		var errs []string
		comp := protocompile.Compiler{
			Resolver: protocompile.WithStandardImports(protocompile.CompositeResolver{
				protocompile.ResolverFunc(func(p string) (protocompile.SearchResult, error) {
					fd, err := protoregistry.GlobalFiles.FindFileByPath(p)
					if err != nil {
						return protocompile.SearchResult{}, err
					}
					return protocompile.SearchResult{Desc: fd}, nil
				}),
				&protocompile.SourceResolver{Accessor: func(p string) (io.ReadCloser, error) {
					data, err := c.readRef(src, p)
					if err != nil {
						return nil, err
					}
					return io.NopCloser(strings.NewReader(string(data))), nil
				}},
			}),
			Reporter: reporter.NewReporter(func(err reporter.ErrorWithPos) error {
				errs = append(errs, err.Error())
				return nil // keep going: report every problem
			}, nil),
		}
		files, err := comp.Compile(context.Background(), names...)
		if len(errs) == 0 && err != nil {
			errs = append(errs, err.Error())
		}
		if len(errs) > 0 {
			for _, e := range errs {
				c.addf(src, "proto_files", "%s", e)
			}
			continue
		}
		for _, f := range files {
			c.registerMessages(src, f.Messages())
		}
	}
}

func (c *compiler) registerMessages(src *source, msgs protoreflect.MessageDescriptors) {
	for i := 0; i < msgs.Len(); i++ {
		md := msgs.Get(i)
		name := string(md.FullName())
		if _, dup := c.messages[name]; dup {
			c.addf(src, "proto_files", "message %s is defined twice", name)
			continue
		}
		c.messages[name] = dynamicpb.NewMessageType(md)
		c.registerMessages(src, md.Messages())
	}
}

// messageType finds a message by full name: the policy's proto_files first, then the types
// compiled into agentauthz.
func (c *compiler) messageType(name string) (protoreflect.MessageType, error) {
	if mt, ok := c.messages[name]; ok {
		return mt, nil
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(name))
	if err != nil {
		return nil, fmt.Errorf("message %s is not defined in proto_files or compiled into agentauthz", name)
	}
	return mt, nil
}

// readRef reads a file a policy file refers to (a schema, a .proto file): a relative path
// inside the policy's directory, never outside it. Its content counts toward the revision.
func (c *compiler) readRef(src *source, ref string) ([]byte, error) {
	if src.file.FS == nil {
		return nil, fmt.Errorf("%s: this policy cannot refer to other files", ref)
	}
	clean := path.Clean(ref)
	if path.IsAbs(ref) || !fs.ValidPath(clean) || clean != ref {
		return nil, fmt.Errorf("%q: refer to files by a clean relative path inside the policy directory", ref)
	}
	full := path.Join(src.file.FSDir, clean)
	data, err := fs.ReadFile(src.file.FS, full)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %v", ref, unwrapPathError(err))
	}
	// protocompile reads imports from several goroutines.
	c.refsMu.Lock()
	c.refs[full] = data
	c.refsMu.Unlock()
	return data, nil
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*fs.PathError); ok {
		return pe.Err
	}
	return err
}
