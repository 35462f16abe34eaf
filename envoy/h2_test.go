package envoy_test

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Response is what an HTTP/2 client got for one stream.
type h2Response struct {
	status  int
	header  [][2]string // response header fields in order, pseudo-headers included
	body    []byte
	trailer [][2]string
	reset   http2.ErrCode // set when the stream was reset instead of answered
	goAway  bool          // the connection was closed with GOAWAY before an answer
	closed  bool          // the connection was closed before the answer ended
}

// get returns the first value of a response header (or trailer) field.
func (r h2Response) get(name string) string {
	for _, f := range append(r.header[:len(r.header):len(r.header)], r.trailer...) {
		if f[0] == name {
			return f[1]
		}
	}
	return ""
}

// rawH2 sends one HTTP/2 request on a new TLS connection (ALPN h2) with exactly the header fields
// given, pseudo-headers included, in order and repeats kept, and body (at most 16 KiB), and
// reads the answer. Go's HTTP/2 client would order, join and check the fields; the tests send
// what it would refuse to (two :authority fields, a :path with a fragment).
func rawH2(t testing.TB, addr string, tlsConf *tls.Config, fields [][2]string, body []byte) h2Response {
	t.Helper()
	conf := tlsConf.Clone()
	conf.NextProtos = []string{"h2"}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, conf)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fr.MaxHeaderListSize = 1 << 20
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range fields {
		if err := enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}); err != nil {
			t.Fatal(err)
		}
	}
	if len(body) > 16384 {
		t.Fatalf("rawH2: a body of %d bytes is over one frame", len(body))
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndStream: len(body) == 0, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	if len(body) > 0 {
		if err := fr.WriteData(1, true, body); err != nil {
			t.Fatal(err)
		}
	}
	var r h2Response
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			// Envoy closed the connection: after a GOAWAY, or without one for a malformed
			// request.
			r.closed = true
			return r
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				_ = fr.WritePing(true, f.Data)
			}
		case *http2.MetaHeadersFrame:
			var fs [][2]string
			for _, hf := range f.Fields {
				fs = append(fs, [2]string{hf.Name, hf.Value})
			}
			if r.status == 0 {
				r.header = fs
				for _, hf := range fs {
					if hf[0] == ":status" {
						r.status, _ = strconv.Atoi(hf[1])
					}
				}
			} else {
				r.trailer = fs
			}
			if f.StreamEnded() {
				return r
			}
		case *http2.DataFrame:
			r.body = append(r.body, f.Data()...)
			if n := len(f.Data()); n > 0 {
				_ = fr.WriteWindowUpdate(0, uint32(n))
				_ = fr.WriteWindowUpdate(1, uint32(n))
			}
			if f.StreamEnded() {
				return r
			}
		case *http2.RSTStreamFrame:
			r.reset = f.ErrCode
			return r
		case *http2.GoAwayFrame:
			r.goAway = true
			if f.ErrCode != http2.ErrCodeNo || f.LastStreamID == 0 {
				return r
			}
		}
	}
}

// String describes the answer in a few words, for logs.
func (r h2Response) String() string {
	switch {
	case r.reset != 0:
		return "stream reset " + r.reset.String()
	case r.status == 0 && r.goAway:
		return "connection closed (GOAWAY)"
	case r.status == 0 && r.closed:
		return "connection closed"
	}
	return fmt.Sprintf("%d", r.status)
}
