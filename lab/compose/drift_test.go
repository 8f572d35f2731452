package compose

import (
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// configVar is one environment variable a service's config struct reads.
type configVar struct {
	name       string
	def        string // envDefault
	hasDefault bool
	pos        string // file:line, for messages
}

// mustConfigVars parses a service's Go files (tests aside) and returns the
// variables its config structs read: the env tag of every field, prefixed
// with the envPrefix of the fields it is nested under, as caarlos0/env does.
func mustConfigVars(tb testing.TB, dir string) map[string]configVar {
	tb.Helper()
	fset := token.NewFileSet()
	paths, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		tb.Fatal(err)
	}
	structs := map[string]*ast.StructType{}
	for _, path := range paths {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			tb.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			if ts, ok := n.(*ast.TypeSpec); ok {
				if st, ok := ts.Type.(*ast.StructType); ok {
					structs[ts.Name.Name] = st
				}
			}
			return true
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "config.go")); err != nil {
		tb.Fatalf("%s has no config.go: %v", filepath.Base(dir), err)
	}

	// nested returns the struct a field's type names, if it is one of the
	// package's structs (or a pointer to one) or an inline struct.
	nested := func(expr ast.Expr) *ast.StructType {
		if star, ok := expr.(*ast.StarExpr); ok {
			expr = star.X
		}
		switch t := expr.(type) {
		case *ast.StructType:
			return t
		case *ast.Ident:
			return structs[t.Name]
		}
		return nil
	}
	// Roots are the structs no other struct nests; walking from them gives
	// every nested struct its full prefix.
	isNested := map[*ast.StructType]bool{}
	for _, st := range structs {
		for _, field := range st.Fields.List {
			if sub := nested(field.Type); sub != nil {
				isNested[sub] = true
			}
		}
	}

	vars := map[string]configVar{}
	var walk func(st *ast.StructType, prefix string)
	walk = func(st *ast.StructType, prefix string) {
		for _, field := range st.Fields.List {
			var tag reflect.StructTag
			if field.Tag != nil {
				s, err := strconv.Unquote(field.Tag.Value)
				if err != nil {
					tb.Fatal(err)
				}
				tag = reflect.StructTag(s)
			}
			if env, ok := tag.Lookup("env"); ok {
				name, _, _ := strings.Cut(env, ",")
				if name == "" {
					continue
				}
				def, hasDefault := tag.Lookup("envDefault")
				vars[prefix+name] = configVar{prefix + name, def, hasDefault, fset.Position(field.Pos()).String()}
				continue
			}
			if sub := nested(field.Type); sub != nil {
				walk(sub, prefix+tag.Get("envPrefix"))
			}
		}
	}
	for _, st := range structs {
		if !isNested[st] {
			walk(st, "")
		}
	}
	if len(vars) == 0 {
		tb.Fatalf("found no env:\"...\" struct tags in %s", dir)
	}
	return vars
}

// composeReferences returns the names of the variables docker-compose.yml
// interpolates (${NAME...}), comments aside.
func composeReferences(tb testing.TB) map[string]bool {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(tb), "docker-compose.yml"))
	if err != nil {
		tb.Fatal(err)
	}
	re := regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)`)
	refs := map[string]bool{}
	for line := range strings.Lines(string(data)) {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for _, m := range re.FindAllStringSubmatch(line, -1) {
			refs[m[1]] = true
		}
	}
	return refs
}

// networkSettings are the service variables the compose file sets to what
// the container network requires, whatever .env says.
var networkSettings = map[string]string{
	"RABBITMQ_HOST": "rabbitmq", // the broker's service name
	"RABBITMQ_PORT": "5672",     // its port inside the network; .env's is published on the host
	"LISTEN_HOST":   "",         // every interface, so nginx can connect
}

// TestConfigDrift keeps the services' config structs, .env.example and the
// compose file in step: every variable a service reads is documented with
// its default, passed to that service's container, and nothing else is.
func TestConfigDrift(t *testing.T) {
	root := repoRoot(t)
	example := mustEnvExample(t)
	p := mustLoadProject(t, example)
	for _, name := range []string{"service01", "service02"} {
		t.Run(name, func(t *testing.T) {
			vars := mustConfigVars(t, filepath.Join(root, name))
			for _, v := range slices.Sorted(maps.Keys(vars)) {
				cv := vars[v]
				want, ok := example[v]
				if !ok {
					t.Errorf("%s: %s is not in .env.example; document it there with its default", cv.pos, v)
					continue
				}
				// The native lab runs with no .env, so the struct's
				// default is the documented one.
				if cv.def != want {
					how := `envDefault:"` + cv.def + `"`
					if !cv.hasDefault {
						how = "no envDefault"
					}
					t.Errorf("%s: %s has %s, but .env.example says %q", cv.pos, v, how, want)
				}
			}

			env := containerEnv(mustService(t, p, name))
			for _, v := range slices.Sorted(maps.Keys(vars)) {
				got, ok := env[v]
				if !ok {
					t.Errorf("docker-compose.yml does not pass %s to %s", v, name)
					continue
				}
				want, fixed := networkSettings[v]
				if !fixed {
					want = example[v]
				}
				if got != want {
					t.Errorf("%s gets %s=%q from compose, want %q", name, v, got, want)
				}
			}
			for _, v := range slices.Sorted(maps.Keys(env)) {
				if _, ok := vars[v]; !ok {
					t.Errorf("docker-compose.yml passes %s to %s, whose config does not read it", v, name)
				}
			}
		})
	}
}

// TestEveryVariableIsUsed checks the other direction: each variable in
// .env.example is read by a service, by the native runner (lab/runner/config.go)
// or by the compose file, and the compose file interpolates only documented
// variables.
func TestEveryVariableIsUsed(t *testing.T) {
	root := repoRoot(t)
	example := mustEnvExample(t)
	used := composeReferences(t)
	if len(used) == 0 {
		t.Fatal("docker-compose.yml interpolates no variable")
	}
	// The native runner's own settings (the ports it binds, the gateway's
	// rate limit it renders) are read by its config struct like the
	// services' are.
	for _, dir := range []string{"service01", "service02", filepath.Join("lab", "runner")} {
		for v := range mustConfigVars(t, filepath.Join(root, dir)) {
			used[v] = true
		}
	}
	for _, v := range slices.Sorted(maps.Keys(example)) {
		if !used[v] {
			t.Errorf(".env.example documents %s, but no service, neither the native runner nor docker-compose.yml uses it", v)
		}
	}
	for _, v := range slices.Sorted(maps.Keys(composeReferences(t))) {
		if _, ok := example[v]; !ok {
			t.Errorf("docker-compose.yml interpolates ${%s}, which .env.example does not document", v)
		}
	}
}
