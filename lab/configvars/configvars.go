// Package configvars reads, from a Go package's source, the environment
// variables its config structs read with caarlos0/env. The tests use it to
// keep .env.example, docker-compose.yml and the configuration reference in
// step with the code, without running the code.
package configvars

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
)

// Var is one environment variable a config struct reads.
type Var struct {
	Name       string
	Default    string // envDefault
	HasDefault bool
	Pos        string // file:line of the field, for messages
}

// Read parses the Go files of dir (tests aside) and returns the variables
// its config structs read: the env tag of every field, prefixed with the
// envPrefix of the fields it is nested under, as caarlos0/env does. dir must
// have a config.go, and its structs at least one env tag.
func Read(dir string) (map[string]Var, error) {
	if _, err := os.Stat(filepath.Join(dir, "config.go")); err != nil {
		return nil, fmt.Errorf("%s has no config.go: %w", filepath.Base(dir), err)
	}
	fset := token.NewFileSet()
	paths, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	structs := map[string]*ast.StructType{}
	for _, path := range paths {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return nil, err
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

	vars := map[string]Var{}
	var errs []error
	var walk func(st *ast.StructType, prefix string)
	walk = func(st *ast.StructType, prefix string) {
		for _, field := range st.Fields.List {
			var tag reflect.StructTag
			if field.Tag != nil {
				s, err := strconv.Unquote(field.Tag.Value)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", fset.Position(field.Pos()), err))
					continue
				}
				tag = reflect.StructTag(s)
			}
			if env, ok := tag.Lookup("env"); ok {
				name, _, _ := strings.Cut(env, ",")
				if name == "" {
					continue
				}
				def, hasDefault := tag.Lookup("envDefault")
				vars[prefix+name] = Var{prefix + name, def, hasDefault, fset.Position(field.Pos()).String()}
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
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(vars) == 0 {
		return nil, fmt.Errorf("found no env:\"...\" struct tags in %s", dir)
	}
	return vars, nil
}
