package bundles

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
)

// Transport bounds what base brings back for OPA's downloaders (bundles,
// discovery, OCI layers), which read a whole tarball into memory before
// they verify it: a GET answered 200 whose body is gzip is read (at most
// MaxBytes) and checked against the limits before the caller sees a byte
// of it. Other bodies pass untouched: OPA's tarball reader refuses what is
// not gzip at its first bytes. base nil is http.DefaultTransport.
func (l Limits) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return &limitedTransport{base: base, limits: l.orDefaults()}
}

type limitedTransport struct {
	base   http.RoundTripper
	limits Limits
}

func (t *limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil || req.Method != http.MethodGet || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	body := bufio.NewReader(resp.Body)
	if magic, _ := body.Peek(2); !bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		resp.Body = struct {
			io.Reader
			io.Closer
		}{body, resp.Body}
		return resp, nil
	}
	data, err := readAtMost(body, resp.ContentLength, t.limits.MaxBytes)
	resp.Body.Close()
	if err == nil {
		err = t.limits.check(data)
	}
	if err != nil {
		return nil, err // the client names the URL
	}
	resp.Body = io.NopCloser(bytes.NewReader(data))
	resp.ContentLength = int64(len(data))
	return resp, nil
}
