package doctest

import (
	"slices"
	"strings"
	"testing"
)

func TestParseChapter(t *testing.T) {
	chapter := strings.Join([]string{
		"# A chapter",
		"",
		"```sh",
		"make run PARTS='rabbitmq service01'",
		"```",
		"",
		"```sh",
		"docker compose up -d",
		"docker compose stop service02",
		"copy=$(docker compose run -d service02)",
		"```",
		"<!-- doctest: docker -->",
		"```console",
		"$ echo docker",
		"docker",
		"```",
		"<!-- doctest: native -->",
		"```console",
		"$ echo native",
		"native",
		"```",
		"<!-- doctest: stop rabbitmq -->",
		"",
		"<!-- doctest: eventually -->",
		"```console",
		"$ curl -s localhost:8000/pong",
		`{"messages":[],"next":null}`,
		"$ echo a \\",
		">   b",
		"a b",
		"```",
		"",
		"<!-- doctest: stop service01 -->",
		"<!-- doctest: skip -->",
		"```console",
		"$ not run",
		"```",
		"```console",
		"$ true",
		"```",
		"<!-- doctest: rabbitmq 3 prints",
		"old",
		"-->",
		"```console",
		"$ echo new",
		"new",
		"```",
	}, "\n")
	steps, err := parseChapter(chapter)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range steps {
		switch s.kind {
		case stepDocker:
			got = append(got, s.road+": "+strings.Join(s.commands, "; "))
		case stepKill:
			got = append(got, s.road+": kill "+strings.Join(s.parts, " "))
		case stepStart:
			got = append(got, s.road+": start "+strings.Join(s.parts, " "))
		case stepStop:
			got = append(got, s.road+": stop "+strings.Join(s.parts, " "))
		case stepCommand:
			line := "run " + s.command + " -> " + strings.Join(s.expected, "|") + " eventually=" + map[bool]string{true: "yes", false: "no"}[s.eventually]
			if s.expected3 != nil {
				line += " on 3.x -> " + strings.Join(s.expected3, "|")
			}
			if s.road != roadBoth {
				line = s.road + ": " + line
			}
			got = append(got, line)
		}
	}
	want := []string{
		"native: start rabbitmq service01",
		"docker: docker compose up -d; docker compose stop service02; copy=$(docker compose run -d service02)",
		"docker: run echo docker -> docker eventually=no",
		"native: run echo native -> native eventually=no",
		"native: stop rabbitmq",
		`run curl -s localhost:8000/pong -> {"messages":[],"next":null} eventually=yes`,
		"run echo a \\\n  b -> a b eventually=yes",
		"native: stop service01",
		"run true ->  eventually=no",
		"run echo new -> new eventually=no on 3.x -> old",
	}
	if !slices.Equal(got, want) {
		t.Errorf("steps:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestParseChapterErrors(t *testing.T) {
	for _, chapter := range []string{
		"```console\nno command first\n```",
		"```console\n$ never closed",
		"<!-- doctest: unknown -->",
		"<!-- doctest: stop -->",
		"<!-- doctest: attempts 1 -->",
		"<!-- doctest: attempts many -->",
		"<!-- doctest: rabbitmq 3 prints\nold",
		"<!-- doctest: rabbitmq 3 prints\nold\n-->\n```console\n$ a\n$ b\n```",
		"<!-- doctest: rabbitmq 3 prints\nold\n-->\n```sh\nmake run\n```",
		"<!-- doctest: rabbitmq 3 prints\nold\n-->\ntext only",
	} {
		if _, err := parseChapter(chapter); err == nil {
			t.Errorf("parseChapter(%q) = nil error, want one", chapter)
		}
	}
}

// TestParseAttempts gives the commands of the block after the directive its
// number of runs, and those of the next block none.
func TestParseAttempts(t *testing.T) {
	steps, err := parseChapter("<!-- doctest: attempts 3 -->\n```console\n$ a\n$ b\n```\n```console\n$ c\n```\n")
	if err != nil {
		t.Fatal(err)
	}
	var got []int
	for _, s := range steps {
		got = append(got, s.attempts)
	}
	if want := []int{3, 3, 0}; !slices.Equal(got, want) {
		t.Errorf("attempts = %v, want %v", got, want)
	}
}

func TestMatchOutput(t *testing.T) {
	for _, tt := range []struct {
		expected, actual string
		want             bool
	}{
		{"", "", true},
		{"a", "a", true},
		{"a", "b", false},
		{"a", "", false},
		{"", "a", false},
		{"a  ", "a", true}, // trailing blanks do not count
		{`{"id":"{uuid}"}`, `{"id":"9c764fc2-903b-4ab3-ae70-81de8dc38f5d"}`, true},
		{`{"id":"{uuid}"}`, `{"id":"not-a-uuid"}`, false},
		{"{time}", "2026-11-22T05:05:26.499992Z", true},
		{"{time}", "2026-11-22T05:05:26+00:00", true},
		{"{time}", "yesterday", false},
		{"n={int}", "n=42", true},
		{"n={int}", "n=4.2", false},
		{"{reqid}", "673e1c26bab76e21f618c8a67111e9f0", true},
		{"{reqid}", "<script>", false},
		{"a {any} c", "a anything at all c", true},
		{"(a.b)", "(axb)", false}, // the rest is literal
		{"first\n...\nlast", "first\nlast", true},
		{"first\n...\nlast", "first\n1\n2\nlast", true},
		{"first\n...\nlast", "first\n1\n2", false},
		{"...", "", true},
	} {
		got := matchOutput(outputLines(tt.expected), outputLines(tt.actual))
		if got != tt.want {
			t.Errorf("matchOutput(%q, %q) = %v, want %v", tt.expected, tt.actual, got, tt.want)
		}
	}
}

func TestHeadingAnchors(t *testing.T) {
	got := headingAnchors("# The lab's docs\n## `POST /ping`\n```sh\n# not a heading\n```\n## Ports\n## Ports\n## 1. Start the lab")
	for _, want := range []string{"the-labs-docs", "post-ping", "ports", "ports-1", "1-start-the-lab"} {
		if !got[want] {
			t.Errorf("no anchor %q in %v", want, got)
		}
	}
	if got["not-a-heading"] {
		t.Error("a comment in a code block became an anchor")
	}
}
