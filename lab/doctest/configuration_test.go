package doctest

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"pingpong/lab/configvars"
	"pingpong/lab/runner"
)

// TestConfigurationReference checks docs/reference/configuration.md against
// .env.example and the config structs: every variable in all three, the
// same default everywhere, and the readers the page names are the structs
// that read the variable.
func TestConfigurationReference(t *testing.T) {
	root, err := runner.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	// variable -> reader -> default
	readers := map[string]map[string]string{}
	for reader, dir := range map[string]string{
		"service01": "service01",
		"service02": "service02",
		"make run":  filepath.Join("lab", "runner"),
	} {
		vars, err := configvars.Read(filepath.Join(root, dir))
		if err != nil {
			t.Fatal(err)
		}
		for name, v := range vars {
			if readers[name] == nil {
				readers[name] = map[string]string{}
			}
			readers[name][reader] = v.Default
		}
	}
	example := envExample(t, filepath.Join(root, ".env.example"))
	b, err := os.ReadFile(filepath.Join(root, "docs", "reference", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, line := range splitLines(string(b)) {
		m := configRowRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		name, def, readBy := m[1], m[2], strings.Split(m[3], ", ")
		if def == "(empty)" {
			def = ""
		} else {
			def = strings.Trim(def, "`")
		}
		documented[name] = true
		if v, ok := example[name]; !ok {
			t.Errorf("%s is documented but not in .env.example", name)
		} else if v != def {
			t.Errorf("%s: the page says the default is %q, .env.example %q", name, def, v)
		}
		// "docker compose": the compose files read it, no config struct.
		readBy = slices.DeleteFunc(readBy, func(r string) bool { return r == "docker compose" })
		structs := readers[name]
		var want []string
		for reader, structDef := range structs {
			want = append(want, reader)
			if structDef != def {
				t.Errorf("%s: the page says the default is %q, %s's config struct %q", name, def, reader, structDef)
			}
		}
		slices.Sort(want)
		slices.Sort(readBy)
		if !slices.Equal(want, readBy) {
			t.Errorf("%s: the page says it is read by %v, the config structs that read it are %v", name, readBy, want)
		}
	}
	for name := range example {
		if !documented[name] {
			t.Errorf("%s is in .env.example but not documented in docs/reference/configuration.md", name)
		}
	}
	for name := range readers {
		if !documented[name] {
			t.Errorf("%s is read by %v but not documented in docs/reference/configuration.md", name, readers[name])
		}
	}
}

var (
	configRowRE = regexp.MustCompile("^\\| `([A-Z0-9_]+)` \\| (`[^`]*`|\\(empty\\)) \\| ([a-z0-9, ]+) \\|")
	exampleRE   = regexp.MustCompile(`^([A-Z][A-Z0-9_]*)=(.*)$`)
)

// envExample reads the variables of .env.example and their values.
func envExample(t *testing.T, path string) map[string]string {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{}
	for _, line := range splitLines(string(b)) {
		if m := exampleRE.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			vars[m[1]] = m[2]
		}
	}
	return vars
}
