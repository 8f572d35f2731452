package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// newClient is the HTTP client of the benchmark's control requests (metrics,
// pages of GET /pong): keep-alive connections, up to conns of them. The load
// itself goes through loadClient.
func newClient(conns int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			MaxConnsPerHost:     conns,
			DisableCompression:  true,
		},
	}
}

var pingBody = []byte(`{"msg":"` + benchMsg + `"}`)

// get sends GET url and expects 200.
func get(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// startNoBroker starts P's Go handler on a free loopback port: POST /ping
// decodes the body and answers 202 with a message as service01 does, without
// touching a broker. It returns the port and a function that stops it.
func startNoBroker() (port int, stop func(), err error) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /ping", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Msg string `json:"msg"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 16<<10)).Decode(&in); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		p := newPublishing(time.Now())
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Location", "/pong/"+p.MessageId)
		w.WriteHeader(http.StatusAccepted)
		w.Write(p.Body)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, nil, err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return ln.Addr().(*net.TCPAddr).Port, func() { srv.Close() }, nil
}

// counter reads one counter or gauge from a Prometheus text exposition.
func counter(ctx context.Context, client *http.Client, metricsURL, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s has no metric %s", metricsURL, name)
}

// consumedMetric counts the messages service02 stored since it started.
const consumedMetric = "service02_messages_consumed_total"

// waitConsumed polls service02's metrics until it has stored n messages
// since it started, and returns when it saw that.
func waitConsumed(ctx context.Context, client *http.Client, service02 string, n int, limit time.Duration) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		c, err := counter(ctx, client, service02+"/metrics", consumedMetric)
		if err == nil && c >= float64(n) {
			return time.Now(), nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("service02 did not store %d messages within %s (last poll: %v, %v)", n, limit, c, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// consumingSince returns the time service02 logged that it started
// consuming, from the first such line after offset in its log.
func consumingSince(logPath string, offset int64) (time.Time, bool) {
	var line struct {
		Time time.Time `json:"time"`
	}
	ok := findLogLine(logPath, offset, "consuming", &line)
	return line.Time, ok
}

// replayedLine returns what service02 logged when it finished replaying the
// event log: the events it read and their rate, from the first such line
// after offset in its log.
func replayedLine(logPath string, offset int64) (events int, perSecond float64, ok bool) {
	var line struct {
		Events    int     `json:"events"`
		PerSecond float64 `json:"events_per_second"`
	}
	ok = findLogLine(logPath, offset, "event log replayed", &line)
	return line.Events, line.PerSecond, ok
}

// findLogLine decodes into v the first JSON line after offset in a
// service's log whose "msg" is msg, and reports whether there was one.
func findLogLine(logPath string, offset int64, msg string, v any) bool {
	f, err := os.Open(logPath)
	if err != nil {
		return false
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return false
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var line struct {
			Msg string `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == msg {
			return json.Unmarshal(sc.Bytes(), v) == nil
		}
	}
	return false
}

// stamps are a stored message's two times: the date service01 gave it and
// when service02 stored it.
type stamps struct{ date, stored time.Time }

// storedTimes pages through service02's GET /pong and returns the stamps of
// each message in want (the keys count), polling until all are there or
// limit passes.
func storedTimes(ctx context.Context, client *http.Client, service02 string, want map[string]time.Time, limit time.Duration) (map[string]stamps, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	got := make(map[string]stamps, len(want))
	after := "" // the cursor of the page being read; "" is the oldest
	for {
		u := service02 + "/pong?limit=1000"
		if after != "" {
			u += "&after=" + url.QueryEscape(after)
		}
		var page struct {
			Messages []struct {
				ID         string `json:"id"`
				Date       string `json:"date"`
				ReceivedAt string `json:"received_at"`
			} `json:"messages"`
			Next *string `json:"next"`
		}
		if err := getJSON(ctx, client, u, &page); err != nil {
			return got, err
		}
		for _, m := range page.Messages {
			if _, ok := want[m.ID]; !ok {
				continue
			}
			date, err1 := time.Parse(time.RFC3339Nano, m.Date)
			stored, err2 := time.Parse(time.RFC3339Nano, m.ReceivedAt)
			if err := errors.Join(err1, err2); err != nil {
				return got, fmt.Errorf("message %s: %w", m.ID, err)
			}
			got[m.ID] = stamps{date, stored}
		}
		if len(got) == len(want) {
			return got, nil
		}
		if page.Next != nil {
			after = *page.Next
			continue
		}
		// The end of the store for now: read this last page again shortly,
		// from the same cursor, until the rest of the messages arrive.
		select {
		case <-ctx.Done():
			return got, fmt.Errorf("service02 stored %d of the %d messages within %s", len(got), len(want), limit)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func getJSON(ctx context.Context, client *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// gcLine matches the live heap in a GODEBUG=gctrace=1 line, e.g.
// "gc 12 @3.456s 2%: ... ms cpu, 40->41->20 MB, 44 MB goal, ...": the heap
// at the start and end of the cycle, then the heap the cycle marked live.
var gcLine = regexp.MustCompile(`^gc \d+ @[0-9.]+s \d+%: .* (\d+)->(\d+)->(\d+) MB`)

// liveHeapAfterGC makes service02 run a garbage collection and returns the
// heap it marked live, in bytes (the runtime reports whole MB). service02
// runs with GODEBUG=gctrace=1, which logs a line to stderr per collection,
// and a low GOGC, so a few requests that allocate and drop memory (pages of
// GET /pong) start one; the store does not change meanwhile.
func liveHeapAfterGC(ctx context.Context, client *http.Client, service02, logPath string) (int64, error) {
	st, err := os.Stat(logPath)
	if err != nil {
		return 0, err
	}
	offset := st.Size()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		for range 10 {
			if err := get(ctx, client, service02+"/pong?limit=1000"); err != nil {
				return 0, err
			}
		}
		live, ok, err := lastLiveHeap(logPath, offset)
		if err != nil {
			return 0, err
		}
		if ok {
			return live, nil
		}
	}
	return 0, errors.New("service02 logged no garbage collection (is GODEBUG=gctrace=1 set?)")
}

// lastLiveHeap returns the live heap of the last complete gctrace line
// written after offset.
func lastLiveHeap(logPath string, offset int64) (live int64, ok bool, err error) {
	f, err := os.Open(logPath)
	if err != nil {
		return 0, false, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return 0, false, err
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if m := gcLine.FindStringSubmatch(sc.Text()); m != nil {
			mb, _ := strconv.ParseInt(m[3], 10, 64)
			live, ok = mb<<20, true
		}
	}
	return live, ok, sc.Err()
}
