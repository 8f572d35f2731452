package doctest

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"pingpong/lab/runner"
)

var (
	// refLab is the whole lab the reference tests (OpenAPI, lab.http,
	// metrics) share; the tutorials start labs of their own.
	refLab = &runner.Shared{Env: readerEnv}
	// gatewayLab is nginx alone, with a rate limit of one request a minute
	// and a burst of 3: the first four proxied requests get 502 (no service
	// runs), the following ones 429, whatever the machine's speed.
	gatewayLab = &runner.Shared{
		Parts: []string{"nginx"},
		Env:   []string{"LOG_LEVEL=info", "GATEWAY_RATE_LIMIT=1r/m", "GATEWAY_RATE_BURST=3"},
	}
)

func TestMain(m *testing.M) {
	code := m.Run()
	code = refLab.Close(code)
	os.Exit(gatewayLab.Close(code))
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
