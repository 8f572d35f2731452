package doctest

import (
	"bufio"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"pingpong/lab/runner"
)

// TestMetricsReference checks docs/reference/metrics.md against the metrics
// the running services export: the same names, the same types, no more.
func TestMetricsReference(t *testing.T) {
	root, err := runner.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "docs", "reference", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	documented := metricTables(string(b))
	l := refLab.Get(t)
	for _, service := range []string{"service01", "service02"} {
		_, body := do(t, "GET", l.ServiceURL(service)+"/metrics", "", nil)
		exported := map[string]string{}
		sc := bufio.NewScanner(strings.NewReader(string(body)))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 4 && f[0] == "#" && f[1] == "TYPE" &&
				!strings.HasPrefix(f[2], "go_") && !strings.HasPrefix(f[2], "process_") && !strings.HasPrefix(f[2], "promhttp_") {
				exported[f[2]] = f[3]
			}
		}
		if !maps.Equal(documented[service], exported) {
			t.Errorf("docs/reference/metrics.md, ## %s:\ndocuments %v\nthe service exports %v",
				service, sorted(documented[service]), sorted(exported))
		}
	}
}

var metricRowRE = regexp.MustCompile("^\\| `([a-z0-9_]+)` \\| (counter|gauge|histogram|summary) \\|")

// metricTables reads the metric tables of metrics.md: name -> type, under
// each "## service" heading.
func metricTables(text string) map[string]map[string]string {
	tables := map[string]map[string]string{}
	var section string
	for _, line := range splitLines(text) {
		if h, ok := strings.CutPrefix(line, "## "); ok {
			section = strings.TrimSpace(h)
			continue
		}
		if m := metricRowRE.FindStringSubmatch(line); m != nil {
			if tables[section] == nil {
				tables[section] = map[string]string{}
			}
			tables[section][m[1]] = m[2]
		}
	}
	return tables
}

func sorted(m map[string]string) []string {
	var s []string
	for k, v := range m {
		s = append(s, k+" "+v)
	}
	slices.Sort(s)
	return s
}
