package badinput

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"pingpong/lab/runner"
)

// TestServerTimeouts keeps the services' HTTP timeouts in step with the
// gateway: each http.Server sets all four, and keeps an idle connection
// longer than nginx does (keepalive_timeout in the template's upstream
// blocks). Were it shorter, a service could close a connection just as
// nginx sends a request on it, and the client would get a 502.
func TestServerTimeouts(t *testing.T) {
	root, err := runner.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := os.ReadFile(filepath.Join(root, "nginx", "templates", "gateway.conf.template"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile(`(?s)\nupstream (service0[12]) \{(.*?)\n\}`).FindAllSubmatch(tmpl, -1)
	if len(blocks) != 2 {
		t.Fatalf("found %d upstream blocks in the template, want 2 (service01, service02)", len(blocks))
	}
	for _, b := range blocks {
		name := string(b[1])
		m := regexp.MustCompile(`\n\s*keepalive_timeout (\d+)s;`).FindSubmatch(b[2])
		if m == nil {
			t.Errorf("upstream %s: no keepalive_timeout in seconds; write it out, so that its relation to the services' IdleTimeout shows", name)
			continue
		}
		secs, _ := strconv.Atoi(string(m[1]))
		keepalive := time.Duration(secs) * time.Second
		timeouts := serverTimeouts(t, filepath.Join(root, name, "main.go"))
		for _, field := range []string{"ReadHeaderTimeout", "ReadTimeout", "WriteTimeout", "IdleTimeout"} {
			if timeouts[field] <= 0 {
				t.Errorf("%s/main.go: the http.Server sets no %s", name, field)
			}
		}
		if idle := timeouts["IdleTimeout"]; idle <= keepalive {
			t.Errorf("%s: IdleTimeout %s is not above the gateway's keepalive_timeout %s", name, idle, keepalive)
		}
	}
}

// serverTimeouts returns the *Timeout fields of the http.Server literal in
// the Go file at path, each written as a number times a time unit.
func serverTimeouts(tb testing.TB, path string) map[string]time.Duration {
	tb.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		tb.Fatal(err)
	}
	units := map[string]time.Duration{"Millisecond": time.Millisecond, "Second": time.Second, "Minute": time.Minute}
	found := map[string]time.Duration{}
	ast.Inspect(f, func(n ast.Node) bool {
		lit, ok := n.(*ast.CompositeLit)
		if !ok {
			return true
		}
		if sel, ok := lit.Type.(*ast.SelectorExpr); !ok || sel.Sel.Name != "Server" {
			return true
		}
		for _, elt := range lit.Elts {
			kv, ok := elt.(*ast.KeyValueExpr)
			if !ok {
				continue
			}
			key, _ := kv.Key.(*ast.Ident)
			mul, ok := kv.Value.(*ast.BinaryExpr)
			if key == nil || !ok || mul.Op != token.MUL {
				continue
			}
			num, ok1 := mul.X.(*ast.BasicLit)
			unit, ok2 := mul.Y.(*ast.SelectorExpr)
			if !ok1 || !ok2 || units[unit.Sel.Name] == 0 {
				continue
			}
			n, err := strconv.Atoi(num.Value)
			if err != nil {
				continue
			}
			found[key.Name] = time.Duration(n) * units[unit.Sel.Name]
		}
		return false
	})
	return found
}
