package doctest

import (
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// readmeSteps are the steps of the README's "Try it", which TestTutorials
// and TestDockerTutorials run as they run a chapter: its console blocks are
// the first thing a reader types. The lab starts as the README's "Two
// commands" start it, with make run or docker compose up.
//
// The README shows the output of one real run, with its ids and times,
// where a chapter writes {uuid}, {time}, {reqid} and {int}; each such value
// is read as the placeholder it stands for. The page's other lines are left
// out, keeping their numbers for messages.
func readmeSteps(t *testing.T, root string) []step {
	t.Helper()
	lines := splitLines(readFile(t, filepath.Join(root, "README.md")))
	from, to := slices.Index(lines, "## Try it"), slices.Index(lines, "## Learn with it")
	if from < 0 || to < from {
		t.Fatal(`README.md: no section from "## Try it" to "## Learn with it"; update readmeSteps with the headings around the first steps`)
	}
	// Where "Two commands" starts the lab, each road's way.
	starts := map[string]int{"make run": -1, "docker compose up -d --build --wait": -1}
	for i, l := range lines[:from] {
		for cmd := range starts {
			if strings.HasPrefix(l, cmd+" ") && i > 0 {
				starts[cmd] = i
			}
		}
	}
	for i := range lines {
		switch {
		case i < from || i >= to:
			lines[i] = ""
		case !strings.HasPrefix(lines[i], "$ "):
			lines[i] = exampleValues(lines[i])
		}
	}
	// Each start as a block of its own, on its line of the README.
	for cmd, i := range starts {
		if i < 0 || i+1 >= from {
			t.Fatalf("README.md: no line starting %q before \"## Try it\"; readmeSteps starts the lab with it", cmd)
		}
		lines[i-1], lines[i], lines[i+1] = "```sh", cmd, "```"
	}
	steps, err := parseChapter(strings.Join(lines, "\n"))
	if err != nil {
		t.Fatalf("README.md: %v", err)
	}
	return steps
}

// exampleValues replaces the values of one run in a line of output with
// the placeholders the harness matches them with.
func exampleValues(line string) string {
	for _, r := range exampleValueRules {
		line = r.re.ReplaceAllString(line, r.placeholder)
	}
	return line
}

var exampleValueRules = []struct {
	re          *regexp.Regexp
	placeholder string
}{
	{regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`), "{uuid}"},
	{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z`), "{time}"},
	{regexp.MustCompile(`\b[0-9a-f]{32}\b`), "{reqid}"}, // the gateway's request ids
	{regexp.MustCompile(`^Date: .*`), "Date: {any}"},
	{regexp.MustCompile(`^Content-Length: \d+$`), "Content-Length: {int}"},
}

func TestExampleValues(t *testing.T) {
	for in, want := range map[string]string{
		`Location: /pong/9c764fc2-903b-4ab3-ae70-81de8dc38f5d`: `Location: /pong/{uuid}`,
		`Date: Sun, 22 Nov 2026 05:05:26 GMT`:                  `Date: {any}`,
		`Content-Length: 145`:                                  `Content-Length: {int}`,
		`{"date":"2026-11-22T05:05:26.499992Z","request_id":"673e1c26bab76e21f618c8a67111e9f0"}`: `{"date":"{time}","request_id":"{reqid}"}`,
		`X-Frame-Options: DENY`: `X-Frame-Options: DENY`,
	} {
		if got := exampleValues(in); got != want {
			t.Errorf("exampleValues(%q) = %q, want %q", in, got, want)
		}
	}
}
