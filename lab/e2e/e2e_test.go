package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"pingpong/lab/bench"
	"pingpong/lab/runner"
)

// pingReply is service01's 202 body; stored is one message of service02's /pong.
type pingReply struct {
	ID        string `json:"id"`
	Msg       string `json:"msg"`
	Date      string `json:"date"`
	RequestID string `json:"request_id"`
}

type stored struct {
	pingReply
	ReceivedAt string `json:"received_at"`
}

type pongPage struct {
	Messages []stored `json:"messages"`
	Next     *string  `json:"next"`
}

type problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail"`
	RequestID string `json:"request_id"`
}

var testClient = &http.Client{
	Timeout:   15 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 64},
}

// gw is the gateway's base URL.
func gw(l *runner.Lab) string { return l.GatewayURL() }

// do sends a request and returns the response with its body read.
func do(tb testing.TB, method, url, body string, header map[string]string) (*http.Response, []byte) {
	tb.Helper()
	req, err := http.NewRequest(method, url, bytes.NewBufferString(body))
	if err != nil {
		tb.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := testClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp, data
}

// ping sends POST /ping through the gateway and requires a 202. It is safe
// to call from any goroutine.
func ping(l *runner.Lab, msg string, header map[string]string) (pingReply, *http.Response, error) {
	body, _ := json.Marshal(map[string]string{"msg": msg})
	req, err := http.NewRequest(http.MethodPost, gw(l)+"/ping", bytes.NewReader(body))
	if err != nil {
		return pingReply{}, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := testClient.Do(req)
	if err != nil {
		return pingReply{}, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return pingReply{}, resp, err
	}
	if resp.StatusCode != http.StatusAccepted {
		return pingReply{}, resp, fmt.Errorf("POST /ping: %s: %s", resp.Status, data)
	}
	var r pingReply
	if err := json.Unmarshal(data, &r); err != nil {
		return pingReply{}, resp, fmt.Errorf("POST /ping: decode %q: %v", data, err)
	}
	return r, resp, nil
}

// mustPing is ping for the test's own goroutine.
func mustPing(tb testing.TB, l *runner.Lab, msg string, header map[string]string) (pingReply, *http.Response) {
	tb.Helper()
	r, resp, err := ping(l, msg, header)
	if err != nil {
		tb.Fatal(err)
	}
	return r, resp
}

// waitFor polls fn until it returns true or the deadline passes.
func waitFor(tb testing.TB, what string, limit time.Duration, fn func() bool) {
	tb.Helper()
	deadline := time.Now().Add(limit)
	for !fn() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// allStored reads every page of GET /pong through the gateway.
func allStored(tb testing.TB, l *runner.Lab) []stored {
	tb.Helper()
	var all []stored
	after := ""
	for {
		u := gw(l) + "/pong?limit=1000"
		if after != "" {
			u += "&after=" + url.QueryEscape(after)
		}
		resp, data := do(tb, http.MethodGet, u, "", nil)
		if resp.StatusCode != http.StatusOK {
			tb.Fatalf("GET /pong: %s: %s", resp.Status, data)
		}
		var page pongPage
		if err := json.Unmarshal(data, &page); err != nil {
			tb.Fatalf("GET /pong: decode: %v", err)
		}
		all = append(all, page.Messages...)
		if page.Next == nil {
			return all
		}
		after = *page.Next
	}
}

func TestPingReachesPongThroughGateway(t *testing.T) {
	l := lab.Get(t)
	r, resp := mustPing(t, l, "hello", nil)

	if r.Msg != "hello" || r.ID == "" || r.Date == "" {
		t.Fatalf("202 body = %+v, want the message with an id and a date", r)
	}
	if got, want := resp.Header.Get("Location"), "/pong/"+r.ID; got != want {
		t.Errorf("Location = %q, want %q", got, want)
	}
	if _, err := time.Parse(time.RFC3339Nano, r.Date); err != nil {
		t.Errorf("date %q is not RFC 3339: %v", r.Date, err)
	}

	var got stored
	waitFor(t, "the message at GET /pong/{id}", 10*time.Second, func() bool {
		resp, data := do(t, http.MethodGet, gw(l)+"/pong/"+r.ID, "", nil)
		if resp.StatusCode != http.StatusOK {
			return false
		}
		if err := json.Unmarshal(data, &got); err != nil {
			t.Fatalf("GET /pong/{id}: decode %q: %v", data, err)
		}
		return true
	})
	if got.pingReply != r {
		t.Errorf("GET /pong/{id} = %+v, want what POST /ping answered, %+v", got.pingReply, r)
	}
	if got.ReceivedAt == "" {
		t.Error("stored message has no received_at")
	}

	found := 0
	for _, m := range allStored(t, l) {
		if m.ID == r.ID {
			found++
		}
	}
	if found != 1 {
		t.Errorf("GET /pong lists the message %d times, want 1", found)
	}
}

func TestRequestIDRoundTrip(t *testing.T) {
	l := lab.Get(t)

	t.Run("a valid id is kept, returned and stored", func(t *testing.T) {
		r, resp := mustPing(t, l, "traced", map[string]string{"X-Request-ID": "tutorial-42.a_b"})
		if got := resp.Header.Get("X-Request-ID"); got != "tutorial-42.a_b" {
			t.Errorf("response X-Request-ID = %q, want the client's", got)
		}
		if r.RequestID != "tutorial-42.a_b" {
			t.Errorf("202 body request_id = %q, want the client's", r.RequestID)
		}
		waitFor(t, "the stored message", 10*time.Second, func() bool {
			resp, data := do(t, http.MethodGet, gw(l)+"/pong/"+r.ID, "", nil)
			var m stored
			return resp.StatusCode == http.StatusOK && json.Unmarshal(data, &m) == nil && m.RequestID == "tutorial-42.a_b"
		})
	})

	t.Run("an invalid id is replaced, never reflected", func(t *testing.T) {
		bad := "<script>alert(1)</script>"
		r, resp := mustPing(t, l, "traced", map[string]string{"X-Request-ID": bad})
		got := resp.Header.Get("X-Request-ID")
		if got == bad || !regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`).MatchString(got) {
			t.Errorf("response X-Request-ID = %q, want a fresh plain id", got)
		}
		if r.RequestID != got {
			t.Errorf("202 body request_id = %q, want the one the gateway gave, %q", r.RequestID, got)
		}
	})

	t.Run("every response carries one", func(t *testing.T) {
		for _, path := range []string{"/healthz", "/pong", "/nowhere"} {
			resp, _ := do(t, http.MethodGet, gw(l)+path, "", nil)
			if ids := resp.Header.Values("X-Request-ID"); len(ids) != 1 || ids[0] == "" {
				t.Errorf("GET %s: X-Request-ID headers = %q, want exactly one", path, ids)
			}
		}
	})
}

func TestConcurrentPingsAreStoredExactlyOnce(t *testing.T) {
	l := lab.Get(t)
	const clients, total = 50, 2000

	var (
		mu     sync.Mutex
		ids    = make(map[string]bool, total)
		failed []error
		wg     sync.WaitGroup
	)
	next := make(chan int)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				r, _, err := ping(l, fmt.Sprintf("load-%d", i), nil)
				mu.Lock()
				if err != nil {
					failed = append(failed, err)
				} else {
					ids[r.ID] = true
				}
				mu.Unlock()
			}
		}()
	}
	for i := range total {
		next <- i
	}
	close(next)
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d of %d pings failed; the first: %v", len(failed), total, failed[0])
	}
	if len(ids) != total {
		t.Fatalf("%d distinct ids for %d pings", len(ids), total)
	}

	seen := map[string]int{}
	waitFor(t, "all pings in /pong", 30*time.Second, func() bool {
		clear(seen)
		for _, m := range allStored(t, l) {
			if ids[m.ID] {
				seen[m.ID]++
			}
		}
		return len(seen) == total
	})
	for id, n := range seen {
		if n != 1 {
			t.Errorf("message %s stored %d times, want once", id, n)
		}
	}
}

// TestALoadTestGetsNoTooManyRequests runs a load test as a learner would on
// make run as shipped: `lab load` at 64 clients, then 1000 requests at
// once, each on a connection of its own (curl --parallel). On one machine
// every client is 127.0.0.1, so the gateway's shipped limit must let all of
// it through: every answer a 202, no 429.
func TestALoadTestGetsNoTooManyRequests(t *testing.T) {
	l := lab.Get(t)
	defaults, err := runner.LoadConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c := l.Config(); c.RateLimit != defaults.RateLimit || c.RateBurst != defaults.RateBurst {
		t.Fatalf("the test lab's gateway limits are %s burst %d, not the shipped %s burst %d", c.RateLimit, c.RateBurst, defaults.RateLimit, defaults.RateBurst)
	}
	var out strings.Builder
	if err := bench.LoadCommand(context.Background(), l.GatewayURL(), []string{"-clients", "64", "-duration", "3s"}, &out); err != nil {
		t.Errorf("lab load: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), " × 202") {
		t.Errorf("lab load printed no 202s:\n%s", out.String())
	}

	const burst = 1000
	statuses := make(chan int, burst)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range burst {
		wg.Go(func() {
			client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
			<-start
			resp, err := client.Post(l.GatewayURL()+"/ping", "application/json", strings.NewReader(`{"msg":"burst"}`))
			if err != nil {
				statuses <- 0
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses <- resp.StatusCode
		})
	}
	close(start)
	wg.Wait()
	close(statuses)
	counts := map[int]int{}
	for s := range statuses {
		counts[s]++
	}
	if counts[http.StatusAccepted] != burst {
		t.Errorf("%d requests at once got %v (status: count; 0 is no answer), want all 202", burst, counts)
	}
}

func TestGatewayAnswersItsOwnRoutes(t *testing.T) {
	l := lab.Get(t)

	resp, data := do(t, http.MethodGet, gw(l)+"/healthz", "", nil)
	if resp.StatusCode != http.StatusOK || !bytes.Contains(data, []byte(`"ok"`)) {
		t.Errorf("GET /healthz = %s %s, want 200 ok", resp.Status, data)
	}

	resp, data = do(t, http.MethodGet, gw(l)+"/nowhere", "", nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /nowhere = %s, want 404", resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("404 Content-Type = %q, want application/problem+json", ct)
	}
	var p problem
	if err := json.Unmarshal(data, &p); err != nil {
		t.Fatalf("404 body %q is not JSON: %v", data, err)
	}
	if p.Status != 404 || p.Title != "Not Found" || p.Detail == "" || p.RequestID != resp.Header.Get("X-Request-ID") {
		t.Errorf("404 problem = %+v, want status, title, a detail and the request id", p)
	}
}

// TestReadyzFollowsTheBroker stops the broker under the running services and
// starts it again. It restarts the broker before it returns, so the tests
// after it find the lab whole.
func TestReadyzFollowsTheBroker(t *testing.T) {
	l := lab.Get(t)
	readyz := func(name string) int {
		resp, err := testClient.Get(l.ServiceURL(name) + "/readyz")
		if err != nil {
			t.Fatalf("%s /readyz: %v", name, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, s := range []string{"service01", "service02"} {
		if got := readyz(s); got != http.StatusOK {
			t.Fatalf("%s /readyz = %d before the broker stopped, want 200", s, got)
		}
	}

	l.StopPart("rabbitmq")
	restarted := false
	defer func() {
		if !restarted {
			l.StartPart(context.Background(), "rabbitmq")
		}
	}()
	for _, s := range []string{"service01", "service02"} {
		waitFor(t, s+" /readyz to turn 503", 15*time.Second, func() bool { return readyz(s) == http.StatusServiceUnavailable })
	}
	resp, data := do(t, http.MethodPost, gw(l)+"/ping", `{"msg":"while the broker is down"}`, map[string]string{"Content-Type": "application/json"})
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("POST /ping with the broker down = %s (Retry-After %q) %s, want 503 with Retry-After", resp.Status, resp.Header.Get("Retry-After"), data)
	}

	if err := l.StartPart(context.Background(), "rabbitmq"); err != nil {
		t.Fatal(err)
	}
	restarted = true
	for _, s := range []string{"service01", "service02"} {
		waitFor(t, s+" /readyz to turn 200 again", 30*time.Second, func() bool { return readyz(s) == http.StatusOK })
	}
	r, _ := mustPing(t, l, "after the broker came back", nil)
	waitFor(t, "the message to be stored", 10*time.Second, func() bool {
		resp, _ := do(t, http.MethodGet, gw(l)+"/pong/"+r.ID, "", nil)
		return resp.StatusCode == http.StatusOK
	})
}
