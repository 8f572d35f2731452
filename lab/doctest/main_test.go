package doctest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"pingpong/lab/runner"
)

var (
	// refLab is the whole lab the reference tests (OpenAPI, lab.http,
	// metrics) share; the tutorials start labs of their own.
	refLab = &sharedLab{}
	// gatewayLab is nginx alone, with a rate limit of one request a minute
	// and a burst of 3: the first four proxied requests get 502 (no service
	// runs), the following ones 429, whatever the machine's speed.
	gatewayLab = &sharedLab{
		parts: []string{"nginx"},
		env:   []string{"GATEWAY_RATE_LIMIT=1r/m", "GATEWAY_RATE_BURST=3"},
	}
)

func TestMain(m *testing.M) {
	code := m.Run()
	code = refLab.close(code)
	os.Exit(gatewayLab.close(code))
}

// sharedLab is runner.Shared with the ports of newTestLab: one lab for the
// tests that ask for it, started by the first.
type sharedLab struct {
	parts []string // empty: the whole lab
	env   []string

	once sync.Once
	lab  *runner.Lab
	dir  string
	err  error
}

func (s *sharedLab) get(tb testing.TB) *runner.Lab {
	tb.Helper()
	s.once.Do(func() {
		if s.dir, s.err = os.MkdirTemp("", "doctest-"); s.err != nil {
			return
		}
		var l *runner.Lab
		if l, s.err = newTestLab(s.dir, s.env...); s.err != nil {
			return
		}
		parts := s.parts
		if len(parts) == 0 {
			parts = runner.Parts()
		}
		if s.err = l.Start(context.Background(), parts); s.err == nil {
			s.lab = l
		}
	})
	if s.err != nil {
		tb.Fatalf("start the lab: %v (state in %s)", s.err, s.dir)
	}
	return s.lab
}

// close stops the lab and removes its folder, which it keeps, with the
// logs, after a failure; it passes code through.
func (s *sharedLab) close(code int) int {
	if s.lab != nil {
		s.lab.Stop()
	}
	if s.dir != "" {
		if code != 0 {
			fmt.Fprintf(os.Stderr, "lab state and logs kept in %s\n", s.dir)
		} else {
			os.RemoveAll(s.dir)
		}
	}
	return code
}

var client = &http.Client{Timeout: 30 * time.Second}

// do sends one request and returns the response with its body read.
func do(t *testing.T, method, url, contentType string, body []byte, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read the body: %v", method, url, err)
	}
	return resp, b
}
