package response

import (
	"bytes"
	"errors"
	"io"
	"sync"

	"github.com/go-json-experiment/json/jsontext"
)

// checkStrict verifies that data is exactly one JSON value that policy/strictjson accepts but
// for depth: duplicate member names, invalid UTF-8 (and \u escapes of lone surrogates) and
// data after the value are refused, with strictjson's decoder options. It reads the value in
// one call of the decoder, not token by token; the walk that follows it bounds the depth
// (strictjson.Cursor.Limit), and strictjson.Check's fuzz target and this package's agree on what passes.
func checkStrict(data []byte) error {
	if len(bytes.Trim(data, " \t\r\n")) == 0 {
		return errors.New("the body is empty")
	}
	d := decoders.Get().(*jsontext.Decoder)
	defer func() {
		d.Reset(&bytes.Buffer{})
		decoders.Put(d)
	}()
	buf := bytes.NewBuffer(data) // read in place: the decoder never writes to it
	d.Reset(buf, jsontext.AllowDuplicateNames(false), jsontext.AllowInvalidUTF8(false))
	if _, err := d.ReadValue(); err != nil {
		return err
	}
	if _, err := d.ReadToken(); !errors.Is(err, io.EOF) {
		return errors.New("data follows the JSON value")
	}
	return nil
}

var decoders = sync.Pool{New: func() any { return jsontext.NewDecoder(&bytes.Buffer{}) }}
