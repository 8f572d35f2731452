package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strconv"
	"time"
)

// loadClient is the load generator's HTTP/1.1 client. Each request is a
// byte string built once and written as is on a keep-alive connection; the
// answer is read just far enough to know its status and body (status line,
// Content-Length or chunked, Connection: close). At most max connections
// are open, each carrying one request at a time, so a closed loop of n
// clients holds n connections and an open loop cannot open thousands when
// the server falls behind (a request waiting for a connection is still
// timed from its intended start).
//
// Why not net/http's client: on a 2-core machine the load generator takes
// its CPU from the lab it measures. http.Transport spends about 45 µs per
// POST /ping here (a reader and a writer goroutine per connection, header
// maps, a Request and a Response per call); this client spends a fraction of
// that, as wrk does. The lab's own control requests (metrics, pages) still
// go through net/http.
type loadClient struct {
	addr  string         // host:port
	idle  chan *loadConn // open connections waiting for a request
	dials chan struct{}  // a token per connection that may still be opened
}

type loadConn struct {
	c   net.Conn
	r   *bufio.Reader
	buf []byte // the last answer's body, reused
}

// requestTimeout bounds one request, connection included, as net/http's
// client Timeout did.
const requestTimeout = 30 * time.Second

func newLoadClient(base string, max int) (*loadClient, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("the load client speaks plain http to host:port, not %q", base)
	}
	c := &loadClient{addr: u.Host, idle: make(chan *loadConn, max), dials: make(chan struct{}, max)}
	for range max {
		c.dials <- struct{}{}
	}
	return c, nil
}

// request builds the bytes of one request to this client's host.
func (c *loadClient) request(method, path, contentType string, body []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, path, c.addr)
	if body != nil {
		fmt.Fprintf(&b, "Content-Type: %s\r\nContent-Length: %d\r\n", contentType, len(body))
	}
	b.WriteString("\r\n")
	b.Write(body)
	return b.Bytes()
}

// do sends req and hands the answer's status and body to fn, while it still
// holds the connection: the body is the connection's buffer, so fn must not
// keep it after returning.
func (c *loadClient) do(ctx context.Context, req []byte, fn func(status int, body []byte) error) error {
	lc, err := c.acquire(ctx)
	if err != nil {
		return err
	}
	status, body, keep, err := lc.roundTrip(req)
	if err == nil {
		err = fn(status, body)
	}
	if err != nil || !keep {
		lc.c.Close()
		c.dials <- struct{}{}
		return err
	}
	c.idle <- lc
	return nil
}

// acquire returns an idle connection if there is one, else opens one if
// fewer than max are open, else waits for one to be free.
func (c *loadClient) acquire(ctx context.Context) (*loadConn, error) {
	select {
	case lc := <-c.idle:
		return lc, nil
	default:
	}
	select {
	case lc := <-c.idle:
		return lc, nil
	case <-c.dials:
		conn, err := net.DialTimeout("tcp", c.addr, 5*time.Second)
		if err != nil {
			c.dials <- struct{}{}
			return nil, err
		}
		return &loadConn{c: conn, r: bufio.NewReaderSize(conn, 4096)}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// close closes the idle connections; call it once the load has stopped.
func (c *loadClient) close() {
	for {
		select {
		case lc := <-c.idle:
			lc.c.Close()
			c.dials <- struct{}{}
		default:
			return
		}
	}
}

// roundTrip writes req and reads one answer. keep is false when the server
// said Connection: close (nginx does after keepalive_requests answers).
func (lc *loadConn) roundTrip(req []byte) (status int, body []byte, keep bool, err error) {
	if err := lc.c.SetDeadline(time.Now().Add(requestTimeout)); err != nil {
		return 0, nil, false, err
	}
	if _, err := lc.c.Write(req); err != nil {
		return 0, nil, false, err
	}
	line, err := lc.r.ReadSlice('\n')
	if err != nil {
		return 0, nil, false, fmt.Errorf("reading the status line: %w", err)
	}
	// "HTTP/1.1 202 Accepted\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, nil, false, fmt.Errorf("not an HTTP/1.x status line: %q", line)
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, nil, false, fmt.Errorf("bad status line %q", line)
	}
	length, chunked, keep := -1, false, true
	for {
		h, err := lc.r.ReadSlice('\n')
		if err != nil {
			return 0, nil, false, fmt.Errorf("reading the headers: %w", err)
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			return 0, nil, false, fmt.Errorf("bad header line %q", h)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 {
				return 0, nil, false, fmt.Errorf("bad Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			keep = !bytes.EqualFold(value, []byte("close"))
		}
	}
	switch {
	case chunked:
		body, err = lc.readChunked()
	case length >= 0:
		body, err = lc.readN(length)
	default:
		// No length: the body runs to the end of the connection.
		body, err = io.ReadAll(lc.r)
		keep = false
	}
	if err != nil {
		return 0, nil, false, fmt.Errorf("reading the body: %w", err)
	}
	return status, body, keep, nil
}

func (lc *loadConn) readN(n int) ([]byte, error) {
	if cap(lc.buf) < n {
		lc.buf = make([]byte, n)
	}
	lc.buf = lc.buf[:n]
	_, err := io.ReadFull(lc.r, lc.buf)
	return lc.buf, err
}

func (lc *loadConn) readChunked() ([]byte, error) {
	lc.buf = lc.buf[:0]
	for {
		line, err := lc.r.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		size, _, _ := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte(";"))
		n, err := strconv.ParseInt(string(size), 16, 32)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("bad chunk size %q", line)
		}
		if n == 0 {
			// Trailers, if any, end with an empty line.
			for {
				t, err := lc.r.ReadSlice('\n')
				if err != nil {
					return nil, err
				}
				if len(bytes.TrimRight(t, "\r\n")) == 0 {
					return lc.buf, nil
				}
			}
		}
		start := len(lc.buf)
		lc.buf = slices.Grow(lc.buf, int(n))[:start+int(n)]
		if _, err := io.ReadFull(lc.r, lc.buf[start:]); err != nil {
			return nil, err
		}
		if _, err := lc.r.Discard(2); err != nil { // the chunk's CRLF
			return nil, err
		}
	}
}

// pinger sends POST /ping through a load client.
type pinger struct {
	client *loadClient
	req    []byte
}

func newPinger(client *loadClient) *pinger {
	return &pinger{client: client, req: client.request("POST", "/ping", "application/json", pingBody)}
}

// ping sends POST /ping; anything but 202 Accepted is an error.
func (p *pinger) ping(ctx context.Context) error {
	return p.client.do(ctx, p.req, func(status int, body []byte) error {
		return wantStatus("POST /ping", status, 202, body)
	})
}

// pingID sends POST /ping and returns the new message's id.
func (p *pinger) pingID(ctx context.Context) (string, error) {
	var id string
	err := p.client.do(ctx, p.req, func(status int, body []byte) error {
		if err := wantStatus("POST /ping", status, 202, body); err != nil {
			return err
		}
		var m struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(body, &m); err != nil || m.ID == "" {
			return fmt.Errorf("POST /ping: no id in the answer %q", body)
		}
		id = m.ID
		return nil
	})
	return id, err
}

// getter sends GET path through a load client and expects 200.
func getter(client *loadClient, path string) func(ctx context.Context) error {
	req := client.request("GET", path, "", nil)
	return func(ctx context.Context) error {
		return client.do(ctx, req, func(status int, body []byte) error {
			return wantStatus("GET "+path, status, 200, body)
		})
	}
}

func wantStatus(what string, got, want int, body []byte) error {
	if got == want {
		return nil
	}
	return fmt.Errorf("%s: %d, want %d: %s", what, got, want, bytes.TrimSpace(body))
}
