package doctest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"pingpong/lab/runner"
)

// httpRequest is one request of docs/lab.http.
type httpRequest struct {
	title   string
	name    string // # @name, for later requests to refer to its answer
	expect  int    // # Expect: status
	method  string
	url     string
	headers [][2]string
	body    string
}

var (
	fileVarRE = regexp.MustCompile(`^@([A-Za-z0-9_]+)\s*=\s*(.*)$`)
	expectRE  = regexp.MustCompile(`^(?:#|//)\s*Expect:\s*(\d{3})\b`)
	nameRE    = regexp.MustCompile(`^(?:#|//)\s*@name\s+(\S+)`)
	requestRE = regexp.MustCompile(`^(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS)\s+(\S+)(?:\s+HTTP/[0-9.]+)?$`)
)

// parseHTTPFile reads the file variables and the requests of an .http file.
func parseHTTPFile(text string) (map[string]string, []httpRequest, error) {
	vars := map[string]string{}
	var reqs []httpRequest
	blocks := regexp.MustCompile(`(?m)^###`).Split(text, -1)
	for i, block := range blocks {
		lines := splitLines(block)
		var r httpRequest
		if i > 0 && len(lines) > 0 {
			r.title = strings.TrimSpace(lines[0])
			lines = lines[1:]
		}
		j := 0
		for ; j < len(lines); j++ {
			line := strings.TrimSpace(lines[j])
			if m := fileVarRE.FindStringSubmatch(line); m != nil {
				vars[m[1]] = strings.TrimSpace(m[2])
				continue
			}
			if m := expectRE.FindStringSubmatch(line); m != nil {
				r.expect, _ = strconv.Atoi(m[1])
				continue
			}
			if m := nameRE.FindStringSubmatch(line); m != nil {
				r.name = m[1]
				continue
			}
			if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "//") {
				continue
			}
			m := requestRE.FindStringSubmatch(line)
			if m == nil {
				return nil, nil, fmt.Errorf("request %q: %q is not a request line", r.title, line)
			}
			r.method, r.url = m[1], m[2]
			j++
			break
		}
		if r.method == "" {
			if i > 0 {
				return nil, nil, fmt.Errorf("request %q has no request line", r.title)
			}
			continue
		}
		for ; j < len(lines) && strings.TrimSpace(lines[j]) != ""; j++ {
			k, v, ok := strings.Cut(lines[j], ":")
			if !ok {
				return nil, nil, fmt.Errorf("request %q: %q is not a header", r.title, lines[j])
			}
			r.headers = append(r.headers, [2]string{strings.TrimSpace(k), strings.TrimSpace(v)})
		}
		r.body = strings.TrimSpace(strings.Join(lines[min(j, len(lines)):], "\n"))
		if r.expect == 0 {
			return nil, nil, fmt.Errorf("request %q has no \"# Expect: <status>\" line", r.title)
		}
		reqs = append(reqs, r)
	}
	return vars, reqs, nil
}

// TestLabHTTP runs docs/lab.http with httpyac, a real .http client, as a
// reader would in an editor: every request, in order, with the answers of
// earlier requests filled into later ones by the file's response handlers.
// Each request must answer with the status its "# Expect:" line notes, and
// every operation of docs/openapi.yaml must be in the file. make test
// installs httpyac (make httpyac) and names it in LAB_HTTPYAC.
func TestLabHTTP(t *testing.T) {
	root, err := runner.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "docs", "lab.http"))
	if err != nil {
		t.Fatal(err)
	}
	vars, reqs, err := parseHTTPFile(string(b))
	if err != nil {
		t.Fatalf("docs/lab.http: %v", err)
	}
	httpyac := mustHTTPYac(t)
	l := refLab.Get(t)

	// The file, with the lab's ports where the reader's defaults are, in a
	// folder of its own: httpyac reads files below its working directory.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "lab.http"), []byte(newRewriter(l, l.State()).command(string(b))), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, httpyac, "send", "lab.http", "--all", "--json")
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	// It exits non-zero when a request failed; its output still says which.
	out, runErr := cmd.Output()
	var run struct {
		Requests []struct {
			Title    string `json:"title"`
			Line     int    `json:"line"`
			Response *struct {
				StatusCode int             `json:"statusCode"`
				Body       json.RawMessage `json:"body"`
			} `json:"response"`
			TestResults []struct {
				Message string `json:"message"`
			} `json:"testResults"`
		} `json:"requests"`
	}
	if err := json.Unmarshal(out, &run); err != nil {
		t.Fatalf("httpyac send lab.http --all: %v; its output is not JSON (%v):\n%s%s", runErr, err, stderr.String(), out)
	}
	if runErr != nil {
		t.Errorf("httpyac send lab.http --all: %v\n%s", runErr, stderr.String())
	}
	if len(run.Requests) != len(reqs) {
		t.Fatalf("httpyac sent %d requests, docs/lab.http has %d", len(run.Requests), len(reqs))
	}
	for i, got := range run.Requests {
		r := reqs[i]
		if got.Response == nil {
			t.Errorf("%s: httpyac got no answer: %+v", r.title, got.TestResults)
			continue
		}
		if got.Response.StatusCode != r.expect {
			t.Errorf("%s (line %d): %s %s answered %d, lab.http expects %d\n%s", r.title, got.Line, r.method, r.url, got.Response.StatusCode, r.expect, got.Response.Body)
		}
	}

	sent := map[string]bool{} // "METHOD path" the file sends to the gateway
	for _, r := range reqs {
		if path, ok := strings.CutPrefix(r.url, "{{gateway}}"); ok {
			path, _, _ = strings.Cut(path, "?")
			sent[r.method+" "+path] = true
		}
	}
	if vars["gateway"] == "" {
		t.Error("docs/lab.http sets no @gateway")
	}

	spec := loadSpec(t)
	paths, _ := spec.doc["paths"].(map[string]any)
	for path, item := range paths {
		ops, _ := item.(map[string]any)
		pathRE := regexp.MustCompile("^" + regexp.MustCompile(`\\\{[^}]+\\\}`).ReplaceAllString(regexp.QuoteMeta(path), `[^/]+`) + "$")
		for method := range ops {
			found := false
			for s := range sent {
				m, p, _ := strings.Cut(s, " ")
				found = found || (m == strings.ToUpper(method) && pathRE.MatchString(p))
			}
			if !found {
				t.Errorf("docs/lab.http has no request for %s %s, which docs/openapi.yaml documents", strings.ToUpper(method), path)
			}
		}
	}
}

// mustHTTPYac returns the httpyac that LAB_HTTPYAC names. Without it the
// test is skipped, unless make test runs it (LAB_NEED_RABBITMQ), which
// installs httpyac first.
func mustHTTPYac(t *testing.T) string {
	t.Helper()
	path := os.Getenv("LAB_HTTPYAC")
	if path == "" {
		if os.Getenv("LAB_NEED_RABBITMQ") != "" || os.Getenv("CI") != "" {
			t.Fatal("LAB_HTTPYAC is not set: make test installs httpyac (make httpyac) and sets it")
		}
		t.Skip("httpyac not installed: make httpyac installs it; then LAB_HTTPYAC=<its folder>/node_modules/.bin/httpyac")
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("LAB_HTTPYAC: %v (make httpyac installs it)", err)
	}
	return path
}
