package fault

import (
	"os"
	"strings"
	"testing"

	"pingpong/lab/runner"
)

var lab = runner.Shared{Env: Env}

func TestMain(m *testing.M) { os.Exit(lab.Close(m.Run())) }

// TestScenarios runs every fault against one lab, in order (each leaves
// the lab whole for the next), and fails on any ping lost, duplicated or
// unexpected, or a scenario's own promise broken.
func TestScenarios(t *testing.T) {
	if testing.Short() {
		t.Skip("the fault suite takes a few minutes")
	}
	l := lab.Get(t)
	suite := NewSuite(l, testWriter{t})
	var results []Result
	for _, sc := range Scenarios() {
		t.Run(sc.Name, func(t *testing.T) {
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
