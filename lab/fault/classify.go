package fault

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Stored is a message as GET /pong lists it.
type Stored struct {
	ID  string `json:"id"`
	Msg string `json:"msg"`
}

// ReadPong reads every message /pong holds, page by page.
func ReadPong(ctx context.Context, gatewayURL string) ([]Stored, error) {
	var all []Stored
	next := ""
	for {
		u := gatewayURL + "/pong?limit=1000"
		if next != "" {
			u += "&after=" + url.QueryEscape(next)
		}
		var page struct {
			Messages []Stored `json:"messages"`
			Next     *string  `json:"next"`
		}
		if err := getJSON(ctx, u, "", &page); err != nil {
			return nil, err
		}
		all = append(all, page.Messages...)
		if page.Next == nil {
			return all, nil
		}
		next = *page.Next
	}
}

// getJSON gets u and decodes its JSON body into v; user, when not empty,
// is "name:password" for basic authentication.
func getJSON(ctx context.Context, u, user string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	if name, pass, ok := strings.Cut(user, ":"); ok {
		req.SetBasicAuth(name, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, body)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// Result is what came of one scenario.
type Result struct {
	Scenario   string
	Sent       int
	Accepted   int         // 202s
	Failed     map[int]int // non-2xx answers by status; 0 counts requests with no answer
	Lost       int         // 202, absent from /pong
	Duplicated int         // an id, or a msg, present more than once
	Unexpected int         // in /pong, never sent, or with an id no 202 gave it
	Recovered  int         // an error or no answer, yet present once
	// Forgotten are 202s absent from /pong that the scenario let go: sent
	// before service02 restarted on an event log whose retention had
	// removed them (the retention scenario only).
	Forgotten int
	// Retried are the pings without a 202 sent again, once, with the same
	// Idempotency-Key after the fault; RetryAccepted of them got a 202.
	// NoRetry says why a scenario does not retry, when it does not.
	Retried, RetryAccepted int
	NoRetry                string
	// Recovery is the time from the fault's end to the first 202 answered
	// after it; -1 when none came.
	Recovery time.Duration
	// Notes are what the scenario measured besides, e.g. how fast the
	// 503s came during a memory alarm.
	Notes []string
	// Problems are the broken promises, each a sentence with examples. A
	// scenario passes when there are none.
	Problems []string
}

// OK reports whether the scenario kept every promise.
func (r Result) OK() bool { return len(r.Problems) == 0 }

// classify sorts every ping of one scenario against the messages /pong
// holds. ours tells which msgs this run sent (in any scenario). A 202 sent
// before forgetBefore (zero: none) and absent is forgotten, not lost.
func classify(r *Result, pings []Ping, stored []Stored, ours map[string]bool, forgetBefore time.Time) {
	byMsg := make(map[string][]Stored, len(stored))
	idCount := make(map[string]int, len(stored))
	for _, s := range stored {
		byMsg[s.Msg] = append(byMsg[s.Msg], s)
		idCount[s.ID]++
	}
	var lost, dup, unexpected, recovered []string

	r.Sent = len(pings)
	r.Failed = map[int]int{}
	noAnswer := map[string]int{}
	for _, p := range pings {
		if p.Err != "" {
			noAnswer[p.Err]++
		}
		found := byMsg[p.Msg]
		if len(found) > 1 {
			dup = append(dup, fmt.Sprintf("%s stored %d times", p.Msg, len(found)))
		}
		if p.Status != http.StatusAccepted {
			r.Failed[p.Status]++
			if len(found) > 0 {
				recovered = append(recovered, p.Msg)
			}
			continue
		}
		r.Accepted++
		switch {
		case len(found) == 0 && p.Sent.Before(forgetBefore):
			r.Forgotten++
		case len(found) == 0:
			lost = append(lost, fmt.Sprintf("%s (id %s, sent %s)", p.Msg, p.ID, p.Sent.UTC().Format("15:04:05.000")))
		case found[0].ID != p.ID:
			unexpected = append(unexpected, fmt.Sprintf("%s stored with id %s, but the 202 said %s", p.Msg, found[0].ID, p.ID))
		}
	}
	for _, s := range stored {
		if !ours[s.Msg] {
			unexpected = append(unexpected, fmt.Sprintf("%s (id %s) was never sent", s.Msg, s.ID))
		}
	}
	for _, id := range slices.Sorted(maps.Keys(idCount)) {
		if n := idCount[id]; n > 1 {
			dup = append(dup, fmt.Sprintf("id %s stored %d times", id, n))
		}
	}

	for _, e := range slices.Sorted(maps.Keys(noAnswer)) {
		r.Notes = append(r.Notes, fmt.Sprintf("no answer %d times: %s", noAnswer[e], e))
	}

	r.Lost, r.Duplicated, r.Unexpected, r.Recovered = len(lost), len(dup), len(unexpected), len(recovered)
	for _, c := range []struct {
		what     string
		examples []string
	}{{"lost (202 but not in /pong)", lost}, {"duplicated", dup}, {"unexpected", unexpected}} {
		if len(c.examples) > 0 {
			r.Problems = append(r.Problems, fmt.Sprintf("%d %s, e.g. %s", len(c.examples), c.what, strings.Join(c.examples[:min(3, len(c.examples))], "; ")))
		}
	}
}

// FailedString formats the non-2xx answers, e.g. "503:120 502:4 none:2".
func (r Result) FailedString() string {
	if len(r.Failed) == 0 {
		return "-"
	}
	var parts []string
	for _, status := range slices.Sorted(maps.Keys(r.Failed)) {
		name := strconv.Itoa(status)
		if status == 0 {
			name = "none"
		}
		parts = append(parts, fmt.Sprintf("%s:%d", name, r.Failed[status]))
	}
	return strings.Join(parts, " ")
}

// WriteTable writes the results as a Markdown table, then the notes and
// problems of each scenario.
func WriteTable(w io.Writer, results []Result) {
	fmt.Fprintln(w, "| scenario | sent | 202 | non-2xx by status | recovered | retried: 202 | lost | duplicated | unexpected | first 202 after the fault |")
	fmt.Fprintln(w, "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|")
	for _, r := range results {
		recovery := "none"
		if r.Recovery >= 0 {
			recovery = r.Recovery.Round(10 * time.Millisecond).String()
		}
		retried := fmt.Sprintf("%d: %d", r.Retried, r.RetryAccepted)
		switch {
		case r.NoRetry != "":
			retried = "no retry"
		case r.Retried == 0:
			retried = "-"
		}
		fmt.Fprintf(w, "| %s | %d | %d | %s | %d | %s | %d | %d | %d | %s |\n",
			r.Scenario, r.Sent, r.Accepted, r.FailedString(), r.Recovered, retried, r.Lost, r.Duplicated, r.Unexpected, recovery)
	}
	for _, r := range results {
		if r.NoRetry != "" {
			fmt.Fprintf(w, "\n%s: no retry: %s", r.Scenario, r.NoRetry)
		}
		for _, n := range r.Notes {
			fmt.Fprintf(w, "\n%s: %s", r.Scenario, n)
		}
		for _, p := range r.Problems {
			fmt.Fprintf(w, "\n%s: FAILED: %s", r.Scenario, p)
		}
	}
	fmt.Fprintln(w)
}

// metric reads a counter or gauge without labels from the Prometheus text
// at base + "/metrics".
func metric(ctx context.Context, base, name string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(body)) {
		if value, ok := strings.CutPrefix(strings.TrimSpace(line), name+" "); ok {
			f, err := strconv.ParseFloat(value, 64)
			return int(f), err
		}
	}
	return 0, fmt.Errorf("%s/metrics has no %s", base, name)
}
