package policy

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
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
			// One resolver, not a CompositeResolver: that one reports the registry's "not found"
			// rather than why the policy directory's file could not be read.
			Resolver: protocompile.WithStandardImports(protocompile.ResolverFunc(func(p string) (protocompile.SearchResult, error) {
				if fd, err := protoregistry.GlobalFiles.FindFileByPath(p); err == nil {
					return protocompile.SearchResult{Desc: fd}, nil
				}
				data, err := c.readRef(src, p)
				if err != nil {
					return protocompile.SearchResult{}, err
				}
				return protocompile.SearchResult{Source: bytes.NewReader(data)}, nil
			})),
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
	if src.file.Dir != "" && src.file.FS == os.DirFS(src.file.Dir) {
		// os.DirFS follows symbolic links wherever they point: a link in the policy directory
		// must not have agentauthz read, and quote in problems, any file of the host.
		if err := insideDir(src.file.Dir, full); err != nil {
			return nil, fmt.Errorf("cannot read %s: %v", ref, err)
		}
	}
	data, err := fs.ReadFile(src.file.FS, full)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %v", ref, unwrapPathError(err))
	}
	// protocompile reads imports from several goroutines. The revision counts the file by its
	// name relative to the policy's directory, however that directory was reached.
	c.refsMu.Lock()
	c.refs[clean] = data
	c.refsMu.Unlock()
	return data, nil
}

// insideDir reports an error unless name, a slash-separated path relative to dir, resolves
// through any symbolic links to a file inside dir. Links inside the directory, such as those
// of a Kubernetes ConfigMap volume, are fine.
func insideDir(dir, name string) error {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return unwrapPathError(err)
	}
	target, err := filepath.EvalSymlinks(filepath.Join(dir, filepath.FromSlash(name)))
	if err != nil {
		return unwrapPathError(err)
	}
	rel, err := filepath.Rel(root, target)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return fmt.Errorf("it is a symbolic link out of the policy directory")
	}
	return nil
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*fs.PathError); ok {
		return pe.Err
	}
	return err
}
