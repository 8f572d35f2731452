package doctest

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"pingpong/lab/runner"
)

// tourRowRE is a row of the code tour's tables: a lesson, a link to a file,
// and what to start at in backquotes.
var tourRowRE = regexp.MustCompile("^\\|[^|]+\\| \\[[^]]+\\]\\(\\.\\./\\.\\./([^)]+)\\) \\| `([^`]+)` \\|$")

// TestCodeTour checks that everything docs/explanation/code-tour.md points at
// is there: in a Go file, a function or method (Type.Method) of that name; in
// any other file, the text itself.
func TestCodeTour(t *testing.T) {
	root, err := runner.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "docs", "explanation", "code-tour.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := 0
	for i, line := range strings.Split(string(data), "\n") {
		m := tourRowRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		rows++
		file, name := filepath.Join(root, m[1]), m[2]
		if !strings.HasSuffix(file, ".go") {
			src, err := os.ReadFile(file)
			if err != nil || !strings.Contains(string(src), name) {
				t.Errorf("code-tour.md:%d: %s has no %q (%v)", i+1, m[1], name, err)
			}
			continue
		}
		if !hasFunc(t, file, name) {
			t.Errorf("code-tour.md:%d: %s declares no function, method or type %s", i+1, m[1], name)
		}
	}
	if rows < 15 {
		t.Errorf("code-tour.md: read %d rows, want every lesson's (the table format changed?)", rows)
	}
}

// hasFunc reports whether the Go file declares name: a function, a method
// written Type.Method, or a type.
func hasFunc(t *testing.T, file, name string) bool {
	t.Helper()
	src, err := os.ReadFile(file)
	if err != nil {
		t.Error(err)
		return false
	}
	_, _, err = declLines(file, src, name)
	return err == nil
}
