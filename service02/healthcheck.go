package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// checkReady implements -healthcheck, the container's health check (the
// distroless image has no curl): it asks the local service02 for /readyz and
// returns nil on 200, else why not.
func checkReady(ctx context.Context, port int) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	url := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) + "/readyz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var p problem
		json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&p) // best effort: the detail says why
		return fmt.Errorf("healthcheck: GET %s: %s: %s", url, resp.Status, p.Detail)
	}
	return nil
}
