package doctest

import (
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v4"

	"pingpong/lab/runner"
)

// notProvoked are the documented answers TestOpenAPI does not cause, and why.
var notProvoked = map[string]string{
	"POST /ping 504":     "needs a service that accepts a connection and never answers",
	"GET /pong 504":      "needs a service that accepts a connection and never answers",
	"GET /pong/{id} 504": "needs a service that accepts a connection and never answers",
}

// TestOpenAPI provokes every documented answer of docs/openapi.yaml (but
// those in notProvoked) from a running lab and checks each real answer
// against the document: its status is documented for the operation, its
// content type too, required headers are there, and the body has every
// required property, with the documented JSON types.
func TestOpenAPI(t *testing.T) {
	spec := loadSpec(t)
	seen := map[string]bool{}
	check := func(path, method string, resp *http.Response, body []byte) {
		t.Helper()
		key := fmt.Sprintf("%s %s %d", method, path, resp.StatusCode)
		seen[key] = true
		for _, p := range spec.checkResponse(path, method, resp, body) {
			t.Errorf("%s: %s\nbody: %s", key, p, body)
		}
	}

	l := refLab.Get(t)
	gw := l.GatewayURL()

	resp, body := do(t, "POST", gw+"/ping", "application/json", []byte(`{"msg":"openapi"}`))
	check("/ping", "POST", resp, body)
	var sent struct{ ID string }
	if err := json.Unmarshal(body, &sent); err != nil || sent.ID == "" {
		t.Fatalf("POST /ping answered %d %s", resp.StatusCode, body)
	}
	resp, body = do(t, "POST", gw+"/ping", "application/json", []byte(`{"msg":`))
	check("/ping", "POST", resp, body)
	resp, body = do(t, "POST", gw+"/ping", "application/json", []byte(`{"msg":"first"}`), "Idempotency-Key", "openapi-1")
	check("/ping", "POST", resp, body)
	resp, body = do(t, "POST", gw+"/ping", "application/json", []byte(`{"msg":"first"}`), "Idempotency-Key", "openapi-1")
	check("/ping", "POST", resp, body)
	if resp.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("POST /ping repeated with its Idempotency-Key: want Idempotent-Replayed: true, got %q", resp.Header.Get("Idempotent-Replayed"))
	}
	resp, body = do(t, "POST", gw+"/ping", "application/json", []byte(`{"msg":"second"}`), "Idempotency-Key", "openapi-1")
	check("/ping", "POST", resp, body)
	resp, body = do(t, "POST", gw+"/ping", "text/plain", []byte(`hello`))
	check("/ping", "POST", resp, body)
	resp, body = do(t, "POST", gw+"/ping", "application/json", []byte(`{"msg":"`+strings.Repeat("a", 20000)+`"}`))
	check("/ping", "POST", resp, body)

	resp, body = waitStored(t, gw, sent.ID)
	check("/pong/{id}", "GET", resp, body)
	resp, body = do(t, "GET", gw+"/pong/no-such-id", "", nil)
	check("/pong/{id}", "GET", resp, body)
	resp, body = do(t, "GET", gw+"/pong/a%2Fb", "", nil)
	check("/pong/{id}", "GET", resp, body)

	_, body = do(t, "POST", gw+"/ping", "application/json", []byte(`{"msg":"openapi 2"}`))
	if err := json.Unmarshal(body, &sent); err != nil {
		t.Fatalf("POST /ping: %s", body)
	}
	waitStored(t, gw, sent.ID)
	resp, body = do(t, "GET", gw+"/pong?limit=1", "", nil)
	check("/pong", "GET", resp, body)
	var page struct{ Next *string }
	if err := json.Unmarshal(body, &page); err != nil || page.Next == nil {
		t.Errorf("GET /pong?limit=1 with two messages stored: want a next cursor, got %s", body)
	} else {
		resp, body = do(t, "GET", gw+"/pong?limit=1&after="+*page.Next, "", nil)
		check("/pong", "GET", resp, body)
	}
	resp, body = do(t, "GET", gw+"/pong?limit=0", "", nil)
	check("/pong", "GET", resp, body)
	resp, body = do(t, "GET", gw+"/healthz", "", nil)
	check("/healthz", "GET", resp, body)

	// 503: with the bindings of the queue and of the event log removed, the
	// broker returns the message (service01 publishes with mandatory set).
	bindings := []string{
		l.ManagementURL() + "/api/bindings/%2F/e/pings/q/pings",
		l.ManagementURL() + "/api/bindings/%2F/e/pings/q/pings.log",
	}
	for _, binding := range bindings {
		resp, body = do(t, "DELETE", binding+"/ping.created", "", nil, "Authorization", basicLab)
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("delete the binding %s: %d %s", binding, resp.StatusCode, body)
		}
	}
	rebind := func() {
		for _, binding := range bindings {
			resp, body := do(t, "POST", binding, "application/json", []byte(`{"routing_key":"ping.created"}`), "Authorization", basicLab)
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("bind %s again: %d %s", binding, resp.StatusCode, body)
			}
		}
	}
	resp, body = do(t, "POST", gw+"/ping", "application/json", []byte(`{"msg":"nowhere"}`))
	rebind()
	check("/ping", "POST", resp, body)

	// 502 and 429 from nginx alone (see gatewayLab): the first four
	// proxied requests get 502, the following ones 429.
	g := gatewayLab.Get(t).GatewayURL()
	resp, body = do(t, "POST", g+"/ping", "application/json", []byte(`{"msg":"hello"}`))
	check("/ping", "POST", resp, body)
	resp, body = do(t, "GET", g+"/pong", "", nil)
	check("/pong", "GET", resp, body)
	resp, body = do(t, "GET", g+"/pong/some-id", "", nil)
	check("/pong/{id}", "GET", resp, body)
	for range 10 {
		if resp.StatusCode == http.StatusTooManyRequests {
			break
		}
		resp, body = do(t, "GET", g+"/pong", "", nil)
	}
	check("/pong", "GET", resp, body)
	resp, body = do(t, "POST", g+"/ping", "application/json", []byte(`{"msg":"hello"}`))
	check("/ping", "POST", resp, body)
	resp, body = do(t, "GET", g+"/pong/some-id", "", nil)
	check("/pong/{id}", "GET", resp, body)

	for _, key := range spec.documented() {
		if !seen[key] && notProvoked[key] == "" {
			t.Errorf("%s is documented in docs/openapi.yaml but the test never saw it: provoke it, or add it to notProvoked with the reason", key)
		}
	}
}

// waitStored polls GET /pong/{id} until service02 has stored the message,
// which it does a moment after POST /ping answered.
func waitStored(t *testing.T, gateway, id string) (*http.Response, []byte) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, body := do(t, "GET", gateway+"/pong/"+id, "", nil)
		if resp.StatusCode == http.StatusOK || time.Now().After(deadline) {
			return resp, body
		}
		time.Sleep(100 * time.Millisecond) // poll interval
	}
}

// basicLab is the Authorization header for the lab's login, lab / lab.
const basicLab = "Basic bGFiOmxhYg=="

// spec is an OpenAPI document, as plain YAML values.
type spec struct {
	doc map[string]any
}

func loadSpec(t *testing.T) spec {
	t.Helper()
	root, err := runner.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "docs", "openapi.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.1.") {
		t.Fatalf("docs/openapi.yaml: openapi is %q, want 3.1.x", v)
	}
	return spec{doc: doc}
}

// resolve follows a local $ref ("#/components/...").
func (s spec) resolve(v any) map[string]any {
	m, _ := v.(map[string]any)
	for range 10 {
		ref, ok := m["$ref"].(string)
		if !ok {
			return m
		}
		var cur any = s.doc
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			cm, _ := cur.(map[string]any)
			cur = cm[part]
		}
		m, _ = cur.(map[string]any)
	}
	return m
}

// documented lists every "METHOD path status" of the document.
func (s spec) documented() []string {
	var keys []string
	paths, _ := s.doc["paths"].(map[string]any)
	for path, item := range paths {
		ops, _ := item.(map[string]any)
		for method, op := range ops {
			responses, _ := s.resolve(op)["responses"].(map[string]any)
			for status := range responses {
				keys = append(keys, fmt.Sprintf("%s %s %s", strings.ToUpper(method), path, status))
			}
		}
	}
	slices.Sort(keys)
	return keys
}

// checkResponse returns what in a real answer disagrees with the document.
func (s spec) checkResponse(path, method string, resp *http.Response, body []byte) []string {
	paths, _ := s.doc["paths"].(map[string]any)
	item, ok := paths[path].(map[string]any)
	if !ok {
		return []string{"the path is not documented"}
	}
	op := s.resolve(item[strings.ToLower(method)])
	if op == nil {
		return []string{"the method is not documented"}
	}
	responses, _ := op["responses"].(map[string]any)
	r := s.resolve(responses[strconv.Itoa(resp.StatusCode)])
	if r == nil {
		return []string{fmt.Sprintf("status %d is not documented", resp.StatusCode)}
	}
	var problems []string
	headers, _ := r["headers"].(map[string]any)
	for name, h := range headers {
		if required, _ := s.resolve(h)["required"].(bool); required && resp.Header.Get(name) == "" {
			problems = append(problems, fmt.Sprintf("the required header %s is missing", name))
		}
	}
	content, _ := r["content"].(map[string]any)
	mediaType, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	media, ok := content[mediaType]
	if !ok {
		return append(problems, fmt.Sprintf("content type %q is not documented for status %d", mediaType, resp.StatusCode))
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return append(problems, fmt.Sprintf("the body is not JSON: %v", err))
	}
	return append(problems, s.checkValue("body", v, s.resolve(media.(map[string]any)["schema"]))...)
}

// checkValue checks v's JSON type, its required properties and constants
// against schema, recursively.
func (s spec) checkValue(where string, v any, schema map[string]any) []string {
	if schema == nil {
		return nil
	}
	var types []string
	switch t := schema["type"].(type) {
	case string:
		types = []string{t}
	case []any:
		for _, x := range t {
			types = append(types, fmt.Sprint(x))
		}
	}
	got := jsonType(v)
	if got == "integer" && slices.Contains(types, "number") {
		got = "number"
	}
	if len(types) > 0 && !slices.Contains(types, got) {
		return []string{fmt.Sprintf("%s is %s, want %s", where, jsonType(v), strings.Join(types, " or "))}
	}
	if c, ok := schema["const"]; ok && fmt.Sprint(c) != fmt.Sprint(v) {
		return []string{fmt.Sprintf("%s is %v, want %v", where, v, c)}
	}
	var problems []string
	switch x := v.(type) {
	case map[string]any:
		required, _ := schema["required"].([]any)
		for _, name := range required {
			if _, ok := x[fmt.Sprint(name)]; !ok {
				problems = append(problems, fmt.Sprintf("%s has no %q", where, name))
			}
		}
		props, _ := schema["properties"].(map[string]any)
		for name, value := range x {
			if ps, ok := props[name]; ok {
				problems = append(problems, s.checkValue(where+"."+name, value, s.resolve(ps))...)
			}
		}
	case []any:
		for i, item := range x {
			problems = append(problems, s.checkValue(fmt.Sprintf("%s[%d]", where, i), item, s.resolve(schema["items"]))...)
		}
	}
	return problems
}

func jsonType(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean"
	case float64:
		if x == float64(int64(x)) {
			return "integer"
		}
		return "number"
	case string:
		return "string"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}
