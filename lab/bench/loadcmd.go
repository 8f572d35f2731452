package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// LoadCommand is `lab load`: it sends POST /ping to a running lab's gateway
// (make run's, or the compose lab's) from concurrent clients for a while,
// as wrk or hey would, and prints the rate, the latency and every status it
// got. It fails when any answer was not 2xx, so a script can tell.
func LoadCommand(ctx context.Context, gateway string, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stdout)
	clients := fs.Int("clients", 64, "concurrent clients, each with its own connection, sending one request after another")
	duration := fs.Duration("duration", 10*time.Second, "how long to send, after a 1 s warm-up")
	url := fs.String("url", gateway, "the gateway's base URL")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *clients < 1 || *duration <= 0 {
		return errors.New("-clients and -duration must be positive")
	}
	client, err := newLoadClient(*url, *clients)
	if err != nil {
		return err
	}
	defer client.close()
	req := client.request("POST", "/ping", "application/json", pingBody)
	var mu sync.Mutex
	statuses := map[int]int{}
	fmt.Fprintf(stdout, "POST %s/ping from %d clients for %s...\n", strings.TrimSuffix(*url, "/"), *clients, *duration)
	res := ClosedLoop(ctx, *clients, time.Second, *duration, func(ctx context.Context, _ int) error {
		return client.do(ctx, req, func(status int, body []byte) error {
			mu.Lock()
			statuses[status]++
			mu.Unlock()
			if status/100 != 2 {
				return fmt.Errorf("%d: %s", status, body)
			}
			return nil
		})
	})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var counts []string
	failed := 0
	for _, status := range slices.Sorted(maps.Keys(statuses)) {
		counts = append(counts, fmt.Sprintf("%s × %d", thousands(float64(statuses[status])), status))
		if status/100 != 2 {
			failed += statuses[status]
		}
	}
	fmt.Fprintf(stdout, "%s requests/s, p50 %s, p99 %s\n", thousands(res.Rate()), ms(res.Quantile(0.50)), ms(res.Quantile(0.99)))
	fmt.Fprintf(stdout, "answers, warm-up included: %s\n", strings.Join(counts, ", "))
	switch {
	case failed > 0:
		return fmt.Errorf("%s answers were not 2xx; the first: %v", thousands(float64(failed)), res.FirstErr)
	case res.Errors > 0:
		return fmt.Errorf("%s requests got no answer; the first: %v", thousands(float64(res.Errors)), res.FirstErr)
	}
	return nil
}
