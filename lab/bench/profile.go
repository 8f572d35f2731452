package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"pingpong/lab/runner"
)

// pprofOverlay is a file added to each service's package main at build time
// with go build -overlay, only when the benchmark is asked to profile: the
// services' own code stays as it is, and their normal builds carry no
// profiling endpoint. It serves net/http/pprof on BENCH_PPROF_ADDR from
// http.DefaultServeMux, which the services' own servers do not use.
const pprofOverlay = `package main

import (
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	if addr := os.Getenv("BENCH_PPROF_ADDR"); addr != "" {
		go http.ListenAndServe(addr, nil)
	}
}
`

// profiler builds the services with the pprof overlay and fetches their
// profiles into dir.
type profiler struct {
	dir   string
	addrs map[string]string // service -> its pprof address
}

// overlay writes the overlay file and its go build -overlay description
// into dir and returns the build flag.
func (p *profiler) overlay(root string) (string, error) {
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return "", err
	}
	src := filepath.Join(p.dir, "bench_pprof.go")
	if err := os.WriteFile(src, []byte(pprofOverlay), 0o644); err != nil {
		return "", err
	}
	replace := map[string]string{}
	for _, s := range []string{"service01", "service02"} {
		replace[filepath.Join(root, s, "zz_bench_pprof.go")] = src
	}
	desc, err := json.Marshal(map[string]any{"Replace": replace})
	if err != nil {
		return "", err
	}
	path := filepath.Join(p.dir, "overlay.json")
	if err := os.WriteFile(path, desc, 0o644); err != nil {
		return "", err
	}
	return "-overlay=" + path, nil
}

// listen gives each service a free pprof address, in its environment.
func (p *profiler) listen(l *runner.Lab) error {
	ports, err := runner.FreePorts(2)
	if err != nil {
		return err
	}
	p.addrs = map[string]string{}
	for i, s := range []string{"service01", "service02"} {
		p.addrs[s] = "127.0.0.1:" + strconv.Itoa(ports[i])
		if err := l.SetServiceEnv(s, "BENCH_PPROF_ADDR="+p.addrs[s]); err != nil {
			return err
		}
	}
	return nil
}

// cpu fetches a CPU profile of d from each service at once, in the
// background; wait for the returned function before using the files.
func (p *profiler) cpu(ctx context.Context, name string, d time.Duration) (wait func() error) {
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, s := range []string{"service01", "service02"} {
		wg.Go(func() {
			errs[i] = p.fetch(ctx, s, fmt.Sprintf("profile?seconds=%d", int(d.Seconds())), name+"-"+s+".cpu.pprof")
		})
	}
	return func() error {
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return err
			}
		}
		return nil
	}
}

// fetch saves /debug/pprof/<what> of a service as dir/file.
func (p *profiler) fetch(ctx context.Context, service, what, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.addrs[service]+"/debug/pprof/"+what, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("profile %s: %w", service, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile %s: %s", service, resp.Status)
	}
	f, err := os.Create(filepath.Join(p.dir, file))
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
