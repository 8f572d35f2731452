// Package fault checks the lab's delivery promise under faults: every ping
// that got a 202 ends up exactly once in /pong, and one that got an error or
// no answer at most once.
//
// A scenario drives the real lab (a runner.Lab) with a steady load of POST
// /ping, each with a msg of its own, injects a fault (a broker restart, a
// crash, a memory alarm, poison messages, a gateway reload), lets the load
// run on until the lab answers 202 again, waits for the queue to drain,
// reads /pong page by page and classifies every ping. The test in this
// package runs every scenario; `go run ./lab fault` prints the same table.
package fault

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Ping is one POST /ping the load sent and what came of it.
type Ping struct {
	Msg      string
	Status   int    // the HTTP status; 0 when no answer came
	ID       string // the message id of a 202
	Err      string // why no answer came, when none did
	Sent     time.Time
	Answered time.Time
}

// Load sends POST /ping to a gateway at a steady rate from a few workers,
// until Stop.
type Load struct {
	stop  chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	pings []Ping
}

// Load shape: the rate is what the lab sustains on a small machine with
// race-enabled builds; the workers are enough that a few requests hanging
// on a fault do not stop the others.
const (
	loadRate    = 150 // requests per second, all workers together
	loadWorkers = 16
	// More than the gateway's 10 s proxy timeout: a request that hangs
	// gets the gateway's 504, not a client-side timeout.
	requestTimeout = 15 * time.Second
)

// StartLoad starts sending pings to gatewayURL, rate per second (loadRate
// when 0); each msg is prefix, a dash and a sequence number.
func StartLoad(gatewayURL, prefix string, rate int) *Load {
	if rate <= 0 {
		rate = loadRate
	}
	l := &Load{stop: make(chan struct{})}
	client := newClient()
	// One ticker paces every worker: a request starts on each tick that a
	// worker is free to take, and the ticks nobody takes are dropped.
	ticker := time.NewTicker(time.Second / time.Duration(rate))
	var seq atomic.Int64
	for range loadWorkers {
		l.wg.Go(func() {
			for {
				select {
				case <-l.stop:
					return
				case <-ticker.C:
				}
				p := send(client, gatewayURL, fmt.Sprintf("%s-%d", prefix, seq.Add(1)))
				l.mu.Lock()
				l.pings = append(l.pings, p)
				l.mu.Unlock()
			}
		})
	}
	go func() {
		<-l.stop
		ticker.Stop()
	}()
	return l
}

// Snapshot returns the pings answered so far.
func (l *Load) Snapshot() []Ping {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.pings)
}

// Stop stops the load, waits for the requests in flight and returns every
// ping, in the order they were sent.
func (l *Load) Stop() []Ping {
	close(l.stop)
	l.wg.Wait()
	pings := l.Snapshot()
	slices.SortFunc(pings, func(a, b Ping) int { return a.Sent.Compare(b.Sent) })
	return pings
}

func newClient() *http.Client {
	return &http.Client{
		Timeout:   requestTimeout,
		Transport: &http.Transport{MaxIdleConnsPerHost: loadWorkers},
	}
}

// Retry sends every ping that did not get a 202 once more, with the same
// msg and Idempotency-Key, as a client that keeps its promise would, and
// returns the answers, in the order of failed.
func Retry(gatewayURL string, failed []Ping) []Ping {
	client := newClient()
	retries := make([]Ping, len(failed))
	next := make(chan int)
	var wg sync.WaitGroup
	for range loadWorkers {
		wg.Go(func() {
			for i := range next {
				retries[i] = send(client, gatewayURL, failed[i].Msg)
			}
		})
	}
	for i := range failed {
		next <- i
	}
	close(next)
	wg.Wait()
	return retries
}

// send posts one ping and records the answer.
//
// Each ping carries an Idempotency-Key (its msg, unique to it), as a client
// that may retry should send. It also lets Go's http.Transport resend the
// request by itself when the server closed the keep-alive connection just
// as the request went out (it does so only for requests that say they are
// safe to repeat): the race every HTTP client meets on a reused connection,
// which nginx's old workers trigger on a reload when they close their idle
// connections. The key makes such a resend harmless: service01 answers it
// with the message it published the first time, if it got that far.
func send(client *http.Client, gatewayURL, msg string) Ping {
	body, _ := json.Marshal(map[string]string{"msg": msg})
	p := Ping{Msg: msg, Sent: time.Now()}
	req, err := http.NewRequest(http.MethodPost, gatewayURL+"/ping", bytes.NewReader(body))
	if err != nil {
		p.Err, p.Answered = err.Error(), time.Now()
		return p
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", msg)
	resp, err := client.Do(req)
	if err != nil {
		p.Err, p.Answered = err.Error(), time.Now()
		return p
	}
	defer resp.Body.Close()
	var accepted struct {
		ID string `json:"id"`
	}
	if resp.StatusCode == http.StatusAccepted {
		if err := json.NewDecoder(resp.Body).Decode(&accepted); err != nil {
			// A 202 without its message: count it as no answer, so that
			// the ping is still classified (it may appear, "recovered").
			p.Err, p.Answered = "202 with an unreadable body: "+err.Error(), time.Now()
			return p
		}
	}
	io.Copy(io.Discard, resp.Body) // so the connection is reused
	p.Status, p.ID, p.Answered = resp.StatusCode, accepted.ID, time.Now()
	return p
}

// firstAcceptedAfter returns how long after t the first 202 answered at or
// after t came, or -1 when none did.
func firstAcceptedAfter(pings []Ping, t time.Time) time.Duration {
	first := time.Duration(-1)
	for _, p := range pings {
		if p.Status == http.StatusAccepted && !p.Answered.Before(t) {
			if d := p.Answered.Sub(t); first < 0 || d < first {
				first = d
			}
		}
	}
	return first
}

// waitCtx waits for d or until ctx is done, and returns ctx's error then.
func waitCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
