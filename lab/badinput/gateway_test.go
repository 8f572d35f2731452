package badinput

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRequestID checks that a client's X-Request-ID is kept when it is
// plain and short, and replaced, never reflected, otherwise.
func TestRequestID(t *testing.T) {
	l := lab.Get(t)
	for _, tt := range []struct {
		name, id string
		kept     bool
	}{
		{"plain", "client-id_1.2", true},
		{"64 characters", strings.Repeat("a", 64), true},
		{"65 characters", strings.Repeat("a", 65), false},
		{"markup", "<script>alert(1)</script>", false},
		{"spaces", "an id", false},
		{"quote", `a"b`, false},
		{"log injection", `x","status":200,"y":"`, false},
		{"non-ASCII", "idé", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// A bad ping, so that service01's problem is checked too.
			resp, body := send(t, http.MethodPost, l.GatewayURL()+"/ping",
				map[string]string{"Content-Type": jsonType, "X-Request-ID": tt.id}, []byte(`{}`))
			p := mustProblem(t, resp, body, http.StatusBadRequest, "msg is required")
			if tt.kept && p.RequestID != tt.id {
				t.Errorf("request id %q replaced by %q", tt.id, p.RequestID)
			}
			if !tt.kept && (p.RequestID == tt.id || strings.Contains(string(body), tt.id)) {
				t.Errorf("invalid request id %q reflected: %s", tt.id, body)
			}
			// The gateway's own errors carry the same id.
			resp, body = send(t, http.MethodGet, l.GatewayURL()+"/nowhere",
				map[string]string{"X-Request-ID": tt.id}, nil)
			p = mustProblem(t, resp, body, http.StatusNotFound, "There is no route for GET /nowhere")
			if tt.kept != (p.RequestID == tt.id) {
				t.Errorf("gateway 404: request id %q, sent %q (kept: %t)", p.RequestID, tt.id, tt.kept)
			}
		})
	}
}

// TestSlowBody checks what happens to a client that stops sending its body:
// once GATEWAY_CLIENT_TIMEOUT (2 s in this lab) has passed, the gateway
// closes the connection. nginx sends no answer then (nobody is left to read
// it) but logs the request as 408. Nothing reaches the service.
func TestSlowBody(t *testing.T) {
	t.Parallel() // the tests run in parallel store nothing, so /pong stays put
	l := lab.Get(t)
	before := storedIDs(t, l)
	conn, err := net.Dial("tcp", strings.TrimPrefix(l.GatewayURL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("slow-body-%d", time.Now().UnixNano())
	body := `{"msg":"hello"}`
	// Half the body, then nothing.
	if _, err := conn.Write(rawRequest("POST /ping HTTP/1.1",
		[]string{"Content-Type: application/json", "Content-Length: 15", "X-Request-ID: " + id}, body[:7])); err != nil {
		t.Fatal(err)
	}
	answer, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("the gateway did not close the connection: %v", err)
	}
	if len(answer) != 0 {
		t.Errorf("answer %q, want none", answer)
	}
	line := waitLogLine(t, l.LogPath("gateway-access"), `"request_id":"`+id+`"`)
	if !strings.Contains(line, `"status":408`) || !strings.Contains(line, `"upstream":""`) {
		t.Errorf("access log line %s: want status 408 and no upstream", line)
	}
	if now := storedIDs(t, l); len(now) != len(before) {
		t.Errorf("/pong holds %d messages, %d before", len(now), len(before))
	}
}

// TestSlowHeaders checks that a client that stops sending its headers is
// cut off after GATEWAY_CLIENT_TIMEOUT (2 s here), without an answer, so it
// cannot hold a connection open.
func TestSlowHeaders(t *testing.T) {
	t.Parallel() // the tests run in parallel store nothing, so /pong stays put
	l := lab.Get(t)
	conn, err := net.Dial("tcp", strings.TrimPrefix(l.GatewayURL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write([]byte("POST /ping HTTP/1.1\r\nHost: lab\r\nContent-Type: appl")); err != nil {
		t.Fatal(err)
	}
	answer, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("the gateway did not close the connection: %v", err)
	}
	if len(answer) != 0 {
		t.Errorf("answer %q, want none", answer)
	}
}

// waitLogLine polls the file at path until a line contains s, and returns it.
func waitLogLine(tb testing.TB, path, s string) string {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, err := os.ReadFile(path)
		if err != nil {
			tb.Fatal(err)
		}
		for line := range strings.Lines(string(data)) {
			if strings.Contains(line, s) {
				return line
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("no line with %s in %s", s, path)
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
}

// TestRateLimit sends a burst beyond the rate limit (5 per second, burst 5)
// to a gateway with no services behind it: what it lets through is
// answered 502, the rest 429 with Retry-After.
func TestRateLimit(t *testing.T) {
	t.Parallel() // a lab of its own
	l := limited.Get(t)
	const n = 30
	type answer struct {
		resp *http.Response
		body []byte
		err  error
	}
	answers := make([]answer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			resp, body, err := do(http.MethodGet, l.GatewayURL()+"/pong", nil, nil)
			answers[i] = answer{resp, body, err}
		})
	}
	wg.Wait()

	limitedCount := 0
	for _, a := range answers {
		if a.err != nil {
			t.Fatal(a.err)
		}
		switch a.resp.StatusCode {
		case http.StatusTooManyRequests:
			limitedCount++
			mustProblem(t, a.resp, a.body, http.StatusTooManyRequests, "more requests than the gateway allows")
			if got := a.resp.Header.Get("Retry-After"); got != "1" {
				t.Errorf("429 with Retry-After %q, want 1", got)
			}
		case http.StatusBadGateway:
			mustProblem(t, a.resp, a.body, http.StatusBadGateway, "The gateway could not reach service02; check that it is running.")
			if got := a.resp.Header.Get("Retry-After"); got != "" {
				t.Errorf("502 with Retry-After %q, want none", got)
			}
		default:
			t.Errorf("status %d, want 429 or 502: %s", a.resp.StatusCode, a.body)
		}
	}
	if limitedCount == 0 {
		t.Errorf("none of %d requests sent at once was limited (rate 5r/s, burst 5)", n)
	}
}
