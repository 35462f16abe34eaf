package docs

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// goName is a Go name as ARCHITECTURE.md writes it: pkg.Name or pkg.(*Type).Method.
var goName = regexp.MustCompile("`([a-z][a-z0-9]*)\\.(?:\\((\\*?)([A-Za-z_][A-Za-z0-9_]*)\\)\\.)?([A-Za-z_][A-Za-z0-9_]*)`")

// TestArchitectureNames: every function, method, type, constant and variable ARCHITECTURE.md
// names exists in the package it names, so the map cannot drift from the code.
func TestArchitectureNames(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "ARCHITECTURE.md"))
	if err != nil {
		t.Fatal(err)
	}
	pkgs := repoPackages(t)
	matches := goName.FindAllStringSubmatch(string(doc), -1)
	if len(matches) < 20 {
		t.Fatalf("ARCHITECTURE.md names only %d Go names; the flows should name the functions they pass through", len(matches))
	}
	for _, m := range matches {
		pkg, ptr, recv, name := m[1], m[2], m[3], m[4]
		if recv == "" && fileSuffix[name] {
			continue // a file name such as buf.yaml
		}
		decls, ok := pkgs[pkg]
		if !ok {
			t.Errorf("%s: no package %s in this repository", m[0], pkg)
			continue
		}
		key := name
		if recv != "" {
			key = ptr + recv + "." + name
		}
		if !decls[key] {
			t.Errorf("%s: package %s has no %s", m[0], pkg, key)
		}
	}
}

// fileSuffix are the extensions of file names the document mentions.
var fileSuffix = map[string]bool{"yaml": true, "md": true, "json": true, "proto": true, "go": true, "mod": true}

// repoPackages maps each package name of the root module to the names it declares: functions,
// types, constants and variables as NAME, methods as *TYPE.NAME or TYPE.NAME. A name used by
// two packages merges their declarations.
func repoPackages(t *testing.T) map[string]map[string]bool {
	t.Helper()
	out := map[string]map[string]bool{}
	fset := token.NewFileSet()
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			base := d.Name()
			if path != ".." && (strings.HasPrefix(base, ".") || base == "testdata") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil && path != ".." {
				return filepath.SkipDir // a nested module
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		decls := out[f.Name.Name]
		if decls == nil {
			decls = map[string]bool{}
			out[f.Name.Name] = decls
		}
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Recv == nil || len(d.Recv.List) == 0 {
					decls[d.Name.Name] = true
					continue
				}
				typ := d.Recv.List[0].Type
				ptr := ""
				if st, ok := typ.(*ast.StarExpr); ok {
					ptr, typ = "*", st.X
				}
				if ix, ok := typ.(*ast.IndexExpr); ok {
					typ = ix.X
				}
				if id, ok := typ.(*ast.Ident); ok {
					decls[ptr+id.Name+"."+d.Name.Name] = true
				}
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						decls[s.Name.Name] = true
					case *ast.ValueSpec:
						for _, n := range s.Names {
							decls[n.Name] = true
						}
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
