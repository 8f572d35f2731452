package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Wrk is what wrk measured: a cross-check of the Go load generator, run
// only where wrk is installed.
type Wrk struct {
	Rate     float64 // requests/s
	P50, P99 time.Duration
	Errors   int // non-2xx/3xx answers and socket errors
}

// wrkPostScript makes wrk send POST /ping with the benchmark's body.
const wrkPostScript = `wrk.method = "POST"
wrk.body = '{"msg":"` + benchMsg + `"}'
wrk.headers["Content-Type"] = "application/json"
`

// runWrk runs wrk with conns connections for d against url (POST /ping
// when post is set, GET otherwise). It returns nil when wrk is not
// installed.
func runWrk(ctx context.Context, url string, conns int, d time.Duration, post bool) (*Wrk, error) {
	bin, err := exec.LookPath("wrk")
	if err != nil {
		return nil, nil
	}
	args := []string{"-t2", "-c" + strconv.Itoa(conns), "-d" + strconv.Itoa(max(int(d.Seconds()), 1)) + "s", "--latency"}
	if post {
		dir, err := os.MkdirTemp("", "bench-wrk-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		script := filepath.Join(dir, "post.lua")
		if err := os.WriteFile(script, []byte(wrkPostScript), 0o644); err != nil {
			return nil, err
		}
		args = append(args, "-s", script)
	}
	out, err := exec.CommandContext(ctx, bin, append(args, url)...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("wrk: %w: %s", err, out)
	}
	return parseWrk(string(out))
}

// parseWrk reads wrk --latency's report.
func parseWrk(out string) (*Wrk, error) {
	var w Wrk
	var haveRate bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "Requests/sec:":
			w.Rate, _ = strconv.ParseFloat(f[1], 64)
			haveRate = true
		case len(f) == 2 && (f[0] == "50%" || f[0] == "99%"):
			d, err := time.ParseDuration(f[1])
			if err != nil {
				return nil, fmt.Errorf("wrk: latency %q: %w", f[1], err)
			}
			if f[0] == "50%" {
				w.P50 = d
			} else {
				w.P99 = d
			}
		case len(f) >= 4 && f[0] == "Non-2xx":
			n, _ := strconv.Atoi(f[len(f)-1])
			w.Errors += n
		case len(f) >= 2 && f[0] == "Socket" && f[1] == "errors:":
			// Socket errors: connect 0, read 0, write 0, timeout 0
			for i := 2; i+1 < len(f); i += 2 {
				n, _ := strconv.Atoi(strings.TrimSuffix(f[i+1], ","))
				w.Errors += n
			}
		}
	}
	if !haveRate {
		return nil, fmt.Errorf("wrk: no Requests/sec in its output:\n%s", out)
	}
	return &w, nil
}
