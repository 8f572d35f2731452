package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// TestLoadClient checks the load generator's HTTP client against Go's own
// server: bodies by Content-Length and chunked, a server that closes the
// connection after an answer, a status other than the one wanted, and the
// bound on open connections.
func TestLoadClient(t *testing.T) {
	var conns, inFlight, maxInFlight atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := maxInFlight.Load()
			if n <= m || maxInFlight.CompareAndSwap(m, n) {
				break
			}
		}
		body, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/ping":
			if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || string(body) != string(pingBody) {
				http.Error(w, "bad request: "+r.Method+" "+string(body), http.StatusBadRequest)
				return
			}
			w.WriteHeader(http.StatusAccepted)
			fmt.Fprintf(w, `{"id":"id-%d","msg":"bench"}`, conns.Load())
		case "/chunked":
			w.WriteHeader(http.StatusOK)
			for i := range 3 {
				fmt.Fprintf(w, "part%d;", i)
				w.(http.Flusher).Flush() // each write its own chunk
			}
		case "/close":
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusOK)
		default:
			http.Error(w, "no such page", http.StatusNotFound)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	ctx := context.Background()

	client, err := newLoadClient(srv.URL, 4)
	if err != nil {
		t.Fatal(err)
	}
	p := newPinger(client)
	id, err := p.pingID(ctx)
	if err != nil || id != "id-1" {
		t.Fatalf("pingID = %q, %v; want id-1", id, err)
	}

	var got string
	err = client.do(ctx, client.request("GET", "/chunked", "", nil), func(status int, body []byte) error {
		got = fmt.Sprint(status, " ", string(body))
		return nil
	})
	if want := "200 part0;part1;part2;"; err != nil || got != want {
		t.Fatalf("chunked answer = %q, %v; want %q", got, err, want)
	}

	// One connection so far, kept alive across both requests; the server's
	// Connection: close must make the client dial again.
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for two requests, want 1 kept alive", n)
	}
	if err := getter(client, "/close")(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.ping(ctx); err != nil {
		t.Fatal(err)
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections after the server closed one, want 2", n)
	}

	err = getter(client, "/missing")(ctx)
	if err == nil || !strings.Contains(err.Error(), "404, want 200: no such page") {
		t.Fatalf("GET /missing: err = %v, want the status and the body", err)
	}

	// 32 concurrent pings through a client of 4 connections.
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Go(func() { errs <- p.ping(ctx) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	client.close()
	if m := maxInFlight.Load(); m > 4 {
		t.Errorf("%d requests in flight at once through 4 connections", m)
	}
	if n := conns.Load(); n > 2+4 {
		t.Errorf("%d connections opened, want at most 4 open at once", n)
	}
}
