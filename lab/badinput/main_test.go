// Package badinput sends every kind of wrong request the lab's users are
// likely to make through the gateway of a real lab, and checks that each
// gets a clear answer: the right status, a problem+json body in the one
// shape every part of the lab uses, a detail that says what to fix, a
// request id, never a 5xx, and nothing stored.
package badinput

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"pingpong/lab/runner"
)

// lab is the whole lab, with a short client timeout so that the 408 case
// takes seconds rather than the default 10.
var lab = runner.Shared{Env: []string{"GATEWAY_CLIENT_TIMEOUT=2s"}}

// limited is a gateway alone with a low rate limit, for the 429 case. With
// no service behind it, requests it lets through are answered 502, which
// also checks that page.
var limited = runner.Shared{
	Parts: []string{"nginx"},
	Env:   []string{"GATEWAY_RATE_LIMIT=5r/s", "GATEWAY_RATE_BURST=5"},
}

func TestMain(m *testing.M) {
	os.Exit(limited.Close(lab.Close(m.Run())))
}

var client = &http.Client{Timeout: 15 * time.Second}

// problem is the body of every error answer, the gateway's and the services'.
type problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail"`
	RequestID string `json:"request_id"`
}

// requestIDRE is what the gateway and the services accept as a request id,
// and so what every answer's id must look like.
var requestIDRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// securityHeaders are on every answer of the gateway, errors included.
// "Server: nginx" is without a version (server_tokens off).
var securityHeaders = map[string]string{
	"X-Content-Type-Options":  "nosniff",
	"X-Frame-Options":         "DENY",
	"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
	"Cache-Control":           "no-store",
	"Server":                  "nginx",
}

// mustProblem checks that resp, with its body already read, is a problem
// with status whose detail contains fragment, and returns it.
func mustProblem(tb testing.TB, resp *http.Response, body []byte, status int, fragment string) problem {
	tb.Helper()
	if resp.StatusCode >= 500 && status < 500 {
		tb.Errorf("status %d: a server error for a client's mistake; body %s", resp.StatusCode, body)
	}
	if resp.StatusCode != status {
		tb.Errorf("status %d, want %d; body %s", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		tb.Errorf("Content-Type %q, want application/problem+json; body %s", ct, body)
	}
	for name, want := range securityHeaders {
		// Once: a service's own copy must not reach the client beside the
		// gateway's.
		if got := resp.Header.Values(name); len(got) != 1 || got[0] != want {
			tb.Errorf("%s %q, want %q once", name, got, want)
		}
	}
	var p problem
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		tb.Fatalf("body is not a problem: %v\n%s", err, body)
	}
	if p.Type != "about:blank" || p.Status != resp.StatusCode || p.Title == "" {
		tb.Errorf("problem %+v: want type about:blank, status %d and a title", p, resp.StatusCode)
	}
	if !strings.Contains(p.Detail, fragment) {
		tb.Errorf("detail %q does not contain %q", p.Detail, fragment)
	}
	id := resp.Header.Get("X-Request-ID")
	if !requestIDRE.MatchString(id) {
		tb.Errorf("X-Request-ID %q is not a valid request id", id)
	}
	if ids := resp.Header.Values("X-Request-ID"); len(ids) != 1 {
		tb.Errorf("X-Request-ID sent %d times: %q", len(ids), ids)
	}
	if p.RequestID != id {
		tb.Errorf("request_id %q differs from the X-Request-ID header %q", p.RequestID, id)
	}
	return p
}

// send makes a request with the standard client and returns the answer
// with its body read.
func send(tb testing.TB, method, url string, header map[string]string, body []byte) (*http.Response, []byte) {
	tb.Helper()
	resp, data, err := do(method, url, header, body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp, data
}

// do is send for any goroutine.
func do(method, url string, header map[string]string, body []byte) (*http.Response, []byte, error) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: read the body: %w", method, url, err)
	}
	return resp, data, nil
}

// sendRaw writes raw, bytes no ordinary client would send, to the gateway
// on a new connection and reads the one answer. The write runs beside the
// read: the gateway may answer, and close, before it has read everything.
func sendRaw(tb testing.TB, l *runner.Lab, raw []byte) (*http.Response, []byte) {
	tb.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(l.GatewayURL(), "http://"))
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		tb.Fatal(err)
	}
	go conn.Write(raw) // an error shows as a missing answer below
	return readAnswer(tb, conn)
}

// readAnswer reads one HTTP answer from conn.
func readAnswer(tb testing.TB, conn net.Conn) (*http.Response, []byte) {
	tb.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		tb.Fatalf("read the answer: %v", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("read the answer's body: %v", err)
	}
	return resp, data
}

// pongPage is the body of GET /pong.
type pongPage struct {
	Messages []struct {
		ID  string `json:"id"`
		Msg string `json:"msg"`
	} `json:"messages"`
	Next *string `json:"next"`
}

// storedIDs returns the ids of every message in /pong, oldest first.
func storedIDs(tb testing.TB, l *runner.Lab) []string {
	tb.Helper()
	var ids []string
	url := l.GatewayURL() + "/pong?limit=1000"
	for {
		resp, body := send(tb, http.MethodGet, url, nil, nil)
		if resp.StatusCode != http.StatusOK {
			tb.Fatalf("GET /pong: %d %s", resp.StatusCode, body)
		}
		var page pongPage
		if err := json.Unmarshal(body, &page); err != nil {
			tb.Fatalf("GET /pong: %v", err)
		}
		for _, m := range page.Messages {
			ids = append(ids, m.ID)
		}
		if page.Next == nil {
			return ids
		}
		url = l.GatewayURL() + "/pong?limit=1000&after=" + *page.Next
	}
}

// mustPing sends a valid ping and returns the id of the message, which
// will appear in /pong.
func mustPing(tb testing.TB, l *runner.Lab, msg string) string {
	tb.Helper()
	body, _ := json.Marshal(map[string]string{"msg": msg})
	resp, data := send(tb, http.MethodPost, l.GatewayURL()+"/ping", map[string]string{"Content-Type": "application/json"}, body)
	if resp.StatusCode != http.StatusAccepted {
		tb.Fatalf("POST /ping: %d %s", resp.StatusCode, data)
	}
	var m struct {
		ID  string `json:"id"`
		Msg string `json:"msg"`
	}
	if err := json.Unmarshal(data, &m); err != nil || m.ID == "" {
		tb.Fatalf("POST /ping: %v: %s", err, data)
	}
	if m.Msg != msg {
		tb.Errorf("POST /ping answered msg %q, want %q", m.Msg, msg)
	}
	return m.ID
}

// waitStored polls GET /pong/{id} until the message is stored and returns
// its msg.
func waitStored(tb testing.TB, l *runner.Lab, id string) string {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, body := send(tb, http.MethodGet, l.GatewayURL()+"/pong/"+id, nil, nil)
		if resp.StatusCode == http.StatusOK {
			var m struct {
				Msg string `json:"msg"`
			}
			if err := json.Unmarshal(body, &m); err != nil {
				tb.Fatalf("GET /pong/%s: %v", id, err)
			}
			return m.Msg
		}
		if time.Now().After(deadline) {
			tb.Fatalf("message %s not stored after 30 s: last answer %d %s", id, resp.StatusCode, body)
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
}

// rawRequest builds a request by hand, with Host and Connection: close
// added, and the body's Content-Length unless header sets a length or a
// Transfer-Encoding itself.
func rawRequest(requestLine string, header []string, body string) []byte {
	var b strings.Builder
	b.WriteString(requestLine + "\r\nHost: lab\r\nConnection: close\r\n")
	framed := false
	for _, h := range header {
		b.WriteString(h + "\r\n")
		lower := strings.ToLower(h)
		framed = framed || strings.HasPrefix(lower, "content-length:") || strings.HasPrefix(lower, "transfer-encoding:")
	}
	if !framed && body != "" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("\r\n" + body)
	return []byte(b.String())
}
