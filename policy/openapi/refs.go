package openapi

import (
	"fmt"
	"net/url"
	"path"
	"strings"
)

// show names a file of the document as problems do.
func (d *Document) show(name string) string {
	if d.prefix == "" || d.prefix == "." {
		return name
	}
	return path.Join(d.prefix, name)
}

// at formats where a location is: "file:line:col", or "file#pointer" where the line is unknown.
func (d *Document) at(l Location) string {
	if f := d.files[l.File]; f != nil {
		if line, col := f.line(l.Pointer); line > 0 {
			return fmt.Sprintf("%s:%d:%d", d.show(l.File), line, col)
		}
	}
	return d.show(l.File) + "#" + l.Pointer
}

// clean makes a library error one line.
func (d *Document) clean(err error) string {
	return strings.Join(strings.Fields(err.Error()), " ")
}

// file returns a file of the document, read and parsed once.
func (d *Document) file(name string) (*file, error) {
	if f := d.files[name]; f != nil {
		return f, nil
	}
	data, err := d.read(name)
	if err != nil {
		return nil, err
	}
	f, err := parseFile(d.show(name), data)
	if err != nil {
		return nil, err
	}
	f.name = name
	d.files[name] = f
	return f, nil
}

// fileAt returns the file a URL the OpenAPI library resolved names: a relative path inside the
// policy directory, never a URL.
func (d *Document) fileAt(u *url.URL) (*file, error) {
	if u.Scheme != "" || u.Host != "" || u.Opaque != "" {
		return nil, fmt.Errorf("$ref to %s: a document may refer only to files beside it, not to URLs", u.Redacted())
	}
	p := u.Path
	if path.IsAbs(p) || path.Clean(p) != p || strings.HasPrefix(p, "../") || p == ".." {
		return nil, fmt.Errorf("$ref to %s: refer to files by a clean relative path inside the policy directory", p)
	}
	return d.file(p)
}

// resolve returns where a $ref written at from points.
func (d *Document) resolve(from Location, ref string) (Location, error) {
	u, err := url.Parse(ref)
	if err != nil {
		return Location{}, fmt.Errorf("$ref %q: %v", ref, err)
	}
	if u.Scheme != "" || u.Host != "" || u.Opaque != "" {
		return Location{}, fmt.Errorf("$ref %q: a document may refer only to files beside it, not to URLs", ref)
	}
	name := from.File
	if u.Path != "" {
		name = path.Join(path.Dir(from.File), u.Path)
		if path.IsAbs(u.Path) || strings.HasPrefix(name, "../") || name == ".." {
			return Location{}, fmt.Errorf("$ref %q: refer to files by a relative path inside the policy directory", ref)
		}
	}
	if u.Fragment != "" && u.Fragment[0] != '/' {
		return Location{}, fmt.Errorf("$ref %q: only JSON pointers (#/...) are read here", ref)
	}
	if _, err := d.file(name); err != nil {
		return Location{}, err
	}
	return Location{name, u.Fragment}, nil
}

// value returns the JSON value at a location.
func (d *Document) value(l Location) (any, bool) {
	f := d.files[l.File]
	if f == nil {
		return nil, false
	}
	return lookup(f.value, l.Pointer)
}

// deref follows the $ref of a reference object (a parameter, request body or path item written
// as {"$ref": ...}) to the object itself.
func (d *Document) deref(l Location) (Location, error) {
	for range 32 {
		v, _ := d.value(l)
		m, _ := v.(map[string]any)
		ref, ok := m["$ref"].(string)
		if !ok {
			return l, nil
		}
		next, err := d.resolve(l, ref)
		if err != nil {
			return Location{}, err
		}
		l = next
	}
	return Location{}, fmt.Errorf("%s: $ref chain too long or circular", d.at(l))
}
