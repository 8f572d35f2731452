package doctest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
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
	fileVarRE  = regexp.MustCompile(`^@([A-Za-z0-9_]+)\s*=\s*(.*)$`)
	expectRE   = regexp.MustCompile(`^(?:#|//)\s*Expect:\s*(\d{3})\b`)
	nameRE     = regexp.MustCompile(`^(?:#|//)\s*@name\s+(\S+)`)
	requestRE  = regexp.MustCompile(`^(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS)\s+(\S+)(?:\s+HTTP/[0-9.]+)?$`)
	templateRE = regexp.MustCompile(`\{\{\s*([^}]+?)\s*\}\}`)
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

// TestLabHTTP sends every request of docs/lab.http, in order, to a running
// lab and checks the status each one notes. A GET is repeated until it
// gets that status (for a message service02 stores a moment later), for
// up to 30 seconds. Every operation of docs/openapi.yaml must be there.
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
	l := refLab.Get(t)
	rw := newRewriter(l, l.State())
	answers := map[string]any{} // @name -> decoded JSON body

	resolve := func(s string) (string, error) {
		var err error
		out := templateRE.ReplaceAllStringFunc(s, func(m string) string {
			ref := templateRE.FindStringSubmatch(m)[1]
			if v, ok := vars[ref]; ok {
				return v
			}
			// {{name.response.body.$.field}}, as the REST Client writes it.
			name, field, ok := strings.Cut(ref, ".response.body.$.")
			if obj, found := answers[name].(map[string]any); ok && found {
				if v, ok := obj[field].(string); ok {
					return v
				}
			}
			err = fmt.Errorf("cannot resolve {{%s}}", ref)
			return m
		})
		return out, err
	}

	sent := map[string]bool{} // "METHOD path" sent to the gateway
	for _, r := range reqs {
		url, err := resolve(r.url)
		if err != nil {
			t.Fatalf("%s: %v", r.title, err)
		}
		if path, ok := strings.CutPrefix(url, vars["gateway"]); ok {
			path, _, _ = strings.Cut(path, "?")
			sent[r.method+" "+path] = true
		}
		url = rw.command(url)
		var header []string
		for _, h := range r.headers {
			v, err := resolve(h[1])
			if err != nil {
				t.Fatalf("%s: %v", r.title, err)
			}
			header = append(header, h[0], v)
		}
		deadline := time.Now().Add(30 * time.Second)
		var resp *http.Response
		var body []byte
		for {
			resp, body = do(t, r.method, url, "", []byte(r.body), header...)
			if resp.StatusCode == r.expect || r.method != "GET" || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond) // poll interval
		}
		if resp.StatusCode != r.expect {
			t.Errorf("%s: %s %s answered %d, lab.http expects %d\n%s", r.title, r.method, r.url, resp.StatusCode, r.expect, body)
			continue
		}
		if r.name != "" {
			var v any
			if err := json.Unmarshal(body, &v); err != nil {
				t.Fatalf("%s: the answer is not JSON: %s", r.title, body)
			}
			answers[r.name] = v
		}
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
