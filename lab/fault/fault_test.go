package fault

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"pingpong/lab/runner"
)

var (
	lab        = runner.Shared{Env: Env}
	clusterLab = runner.Shared{Env: ClusterEnv}
)

func TestMain(m *testing.M) { os.Exit(clusterLab.Close(lab.Close(m.Run()))) }

// TestScenarios runs every fault against one lab, in order (each leaves
// the lab whole for the next), and fails on any ping lost, duplicated or
// unexpected, or a scenario's own promise broken.
//
// The Idempotency-Key check runs on the same lab after the scenarios, which
// count every message in /pong as theirs or unexpected.
func TestScenarios(t *testing.T) {
	l := lab.Get(t)
	if !testing.Short() { // the fault suite takes a few minutes
		runScenarios(t, l, Scenarios())
	}
	t.Run("idempotency-key", func(t *testing.T) { idempotencyKeyThroughTheLab(t, l) })
}

// TestClusterScenarios runs the cluster's faults against a lab of three
// broker nodes.
func TestClusterScenarios(t *testing.T) {
	if testing.Short() {
		t.Skip("the fault suite takes a few minutes")
	}
	runScenarios(t, clusterLab.Get(t), ClusterScenarios())
}

func runScenarios(t *testing.T, l *runner.Lab, scenarios []Scenario) {
	suite := NewSuite(l, testWriter{t})
	var results []Result
	for _, sc := range scenarios {
		t.Run(sc.Name, func(t *testing.T) {
			if sc.Name == "partition" && os.Geteuid() != 0 && os.Getenv("CI") == "" {
				t.Skip("cutting a node off (iptables) needs root; make test runs it as root in CI")
			}
			r := suite.Run(t.Context(), sc)
			results = append(results, r)
			for _, p := range r.Problems {
				t.Error(p)
			}
		})
	}
	var table strings.Builder
	WriteTable(&table, results)
	t.Logf("\n%s", table.String())
}

// testWriter logs each line written through t.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// idempotencyKeyThroughTheLab retries one ping with one key, some of the
// retries at the same time, through the gateway: every answer is the same
// 202 and /pong holds the message once. The same key with another msg is
// refused.
func idempotencyKeyThroughTheLab(t *testing.T, l *runner.Lab) {
	msg := "idempotent-" + NewSuite(l, nil).run
	publishedBefore := confirmedPublishes(t, l.ServiceURL("service01"))
	post := func(msg string) (int, string) {
		body, _ := json.Marshal(map[string]string{"msg": msg})
		req, err := http.NewRequest(http.MethodPost, l.GatewayURL()+"/ping", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "key-"+msg)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return 0, ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	status, first := post(msg)
	if status != http.StatusAccepted {
		t.Fatalf("first POST: %d %s", status, first)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if status, body := post(msg); status != http.StatusAccepted || body != first {
				t.Errorf("retry: %d %s; want 202 %s", status, body, first)
			}
		})
	}
	wg.Wait()
	var sent struct{ ID string }
	json.Unmarshal([]byte(first), &sent)

	// A new key, several requests at once: one message for all of them.
	concurrent := msg + "-concurrent"
	bodies := make([]string, 8)
	for i := range bodies {
		wg.Go(func() { _, bodies[i] = post(concurrent) })
	}
	wg.Wait()
	for _, b := range bodies {
		if b != bodies[0] {
			t.Errorf("concurrent answers differ:\n%s\n%s", b, bodies[0])
		}
	}

	req, _ := http.NewRequest(http.MethodPost, l.GatewayURL()+"/ping", strings.NewReader(`{"msg":"something else"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "key-"+msg)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("same key, other msg: %d, want 422", resp.StatusCode)
	}

	// The tests of this package run one at a time: service01 published
	// exactly the two messages since.
	if n := confirmedPublishes(t, l.ServiceURL("service01")) - publishedBefore; n != 2 {
		t.Errorf("service01 published %d messages, want 2", n)
	}

	// Poll until both messages are stored, then count them.
	deadline := time.Now().Add(30 * time.Second)
	for {
		stored, err := ReadPong(t.Context(), l.GatewayURL())
		if err != nil {
			t.Fatal(err)
		}
		count := map[string]int{}
		for _, s := range stored {
			count[s.Msg]++
			if s.Msg == msg && s.ID != sent.ID {
				t.Errorf("stored with id %s, the 202 said %s", s.ID, sent.ID)
			}
		}
		if count[msg] > 1 || count[concurrent] > 1 {
			t.Fatalf("stored %d and %d times, want once each", count[msg], count[concurrent])
		}
		if count[msg] == 1 && count[concurrent] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s /pong holds the message %d times and the concurrent one %d times, want once each", count[msg], count[concurrent])
		}
		waitCtx(t.Context(), 200*time.Millisecond)
	}
}

// confirmedPublishes reads service01_publishes_total{result="confirmed"}
// from service01's metrics.
func confirmedPublishes(t *testing.T, service01 string) int {
	t.Helper()
	resp, err := http.Get(service01 + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	const name = `service01_publishes_total{result="confirmed"} `
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, name); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatalf("%s%s: %v", name, v, err)
			}
			return n
		}
	}
	t.Fatalf("no %s in service01's metrics", name)
	return 0
}
