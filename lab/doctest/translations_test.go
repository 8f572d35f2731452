package doctest

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"pingpong/lab/runner"
)

// translations are the languages the tutorial is written in besides
// English, each a folder of docs/ that mirrors docs/tutorials, docs/how-to
// and docs/explanation, page for page, with a README of its own.
var translations = []struct {
	folder string // under docs/
	name   string // what the language switch calls it
	// firstSteps is the heading of its README's translation of the
	// README's "Two commands", followed by "Try it" and the index
	firstSteps string
}{
	{"pt-BR", "Português", "## Dois comandos"},
}

// translatedFolders are the folders of docs/ whose every page is translated.
var translatedFolders = []string{"tutorials", "how-to", "explanation"}

// TestTranslations keeps every translation in step with the English pages:
// each page exists in both languages, a page's commands, their shown output,
// its quotes of the code and its doctest comments are the English page's,
// character for character (so the English doc test runs the translated
// chapters too), and a language switch at the top of each page links it to
// the other. Broken links and anchors in a translation fail TestLinks.
func TestTranslations(t *testing.T) {
	root, err := runner.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	docs := filepath.Join(root, "docs")
	for _, tr := range translations {
		base := filepath.Join(docs, tr.folder)
		var english []string // pages relative to docs/
		for _, folder := range translatedFolders {
			pages, err := filepath.Glob(filepath.Join(docs, folder, "*.md"))
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range pages {
				rel, _ := filepath.Rel(docs, p)
				english = append(english, rel)
			}
		}
		for _, rel := range english {
			en := filepath.Join(docs, rel)
			other := filepath.Join(base, rel)
			if _, err := os.Stat(other); err != nil {
				t.Errorf("docs/%s has no translation in docs/%s/%s: translate it, keeping every fenced block and doctest comment as it is", rel, tr.folder, rel)
				continue
			}
			comparePages(t, relTo(root, en), relTo(root, other), readFile(t, en), readFile(t, other))
			checkSwitch(t, root, en, other, tr.name)
			checkSwitch(t, root, other, en, "English")
		}
		// A page that exists only in the translation has lost its English
		// original (renamed or removed).
		err = filepath.WalkDir(base, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".md") {
				return err
			}
			rel, _ := filepath.Rel(base, path)
			if rel == "README.md" {
				return nil
			}
			if !slices.Contains(english, rel) {
				t.Errorf("docs/%s/%s has no English page docs/%s: rename or remove it with its original", tr.folder, rel, rel)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}

		// The translation's README is the README's first steps ("Two
		// commands", "Try it") and the index of docs/README.md in that
		// language.
		readme := filepath.Join(root, "README.md")
		index := filepath.Join(docs, "README.md")
		own := filepath.Join(base, "README.md")
		ownText := readFile(t, own)
		first := sections(readFile(t, readme), "## Two commands", "## Learn with it")
		if first == "" {
			t.Fatalf("README.md: no sections from %q to %q; update TestTranslations with the headings that start and end the first steps", "## Two commands", "## Learn with it")
		}
		ownFirst := sections(ownText, tr.firstSteps, "")
		if ownFirst == "" {
			t.Errorf("docs/%s/README.md: no heading %q; translate the README's first steps under it", tr.folder, tr.firstSteps)
		}
		comparePages(t, `README.md ("Two commands" and "Try it")`, relTo(root, own), first, ownFirst)
		checkSwitch(t, root, readme, own, tr.name)
		checkSwitch(t, root, index, own, tr.name)
		checkSwitch(t, root, own, readme, "English")
		for _, rel := range english {
			if !linksTo(t, own, ownText, filepath.Join(base, rel)) {
				t.Errorf("docs/%s/README.md does not list %s: link to it", tr.folder, rel)
			}
		}
	}
}

// comparePages reports where a translation's fenced blocks or doctest
// comments differ from the original's. Diagrams (mermaid) may be
// translated; every other block is a command, its output, a quote of the
// code or a file, which stays as it is.
func comparePages(t *testing.T, en, other, enText, otherText string) {
	t.Helper()
	a, b := untranslated(enText), untranslated(otherText)
	for i := range max(len(a), len(b)) {
		switch {
		case i >= len(a):
			t.Errorf("%s:%d: a %s that %s does not have; remove it", other, b[i].line, b[i].what, en)
		case i >= len(b):
			t.Errorf("%s: lacks the %s of %s:%d:\n%s", other, a[i].what, en, a[i].line, a[i].text)
		case a[i].text != b[i].text:
			t.Errorf("%s:%d: the %s differs from %s:%d; copy it as it is there:\n%s", other, b[i].line, b[i].what, en, a[i].line, a[i].text)
		}
		if t.Failed() && i >= min(len(a), len(b)) {
			return // one report of a missing or extra tail is enough
		}
	}
}

type untranslatedPart struct {
	what string // "fenced block" or "doctest comment"
	line int
	text string
}

// untranslated returns a page's fenced blocks (a mermaid diagram as its
// info string alone) and doctest comments, in order.
func untranslated(text string) []untranslatedPart {
	var parts []untranslatedPart
	lines := splitLines(text)
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if fence, info, ok := openingFence(line); ok {
			start := i
			for i++; i < len(lines) && strings.TrimSpace(lines[i]) != fence; i++ {
			}
			body := strings.Join(lines[start:min(i+1, len(lines))], "\n")
			if info == "mermaid" {
				body = line + " (a diagram, translated)"
			}
			parts = append(parts, untranslatedPart{"fenced block", start + 1, body})
			continue
		}
		if strings.HasPrefix(strings.TrimSpace(line), "<!-- doctest:") {
			start := i
			for ; i < len(lines) && !strings.Contains(lines[i], "-->"); i++ {
			}
			body := strings.Join(lines[start:min(i+1, len(lines))], "\n")
			parts = append(parts, untranslatedPart{"doctest comment", start + 1, body})
		}
	}
	return parts
}

// checkSwitch wants page's language switch, within its first three lines,
// to link to other under the language's name.
func checkSwitch(t *testing.T, root, page, other, name string) {
	t.Helper()
	lines := splitLines(readFile(t, page))
	rel, _ := filepath.Rel(filepath.Dir(page), other)
	want := fmt.Sprintf("[%s](%s)", name, filepath.ToSlash(rel))
	for _, l := range lines[:min(3, len(lines))] {
		if strings.Contains(l, want) {
			return
		}
	}
	t.Errorf("%s: no language switch at the top; its first lines should link to the other language, as %s", relTo(root, page), want)
}

// linksTo reports whether a page's text links to target.
func linksTo(t *testing.T, page, text, target string) bool {
	t.Helper()
	for _, l := range markdownLinks(text) {
		path, _, _ := strings.Cut(l.target, "#")
		if path != "" && filepath.Join(filepath.Dir(page), filepath.FromSlash(path)) == target {
			return true
		}
	}
	return false
}

// sections returns the lines of text from the heading from up to the
// heading to (to the end when to is ""), or "" if either is missing.
func sections(text, from, to string) string {
	lines := splitLines(text)
	start, end := slices.Index(lines, from), len(lines)
	if to != "" {
		end = slices.Index(lines, to)
	}
	if start < 0 || end < start {
		return ""
	}
	return strings.Join(lines[start:end], "\n")
}

// relTo is path relative to the repository's root, for messages.
func relTo(root, path string) string {
	r, err := filepath.Rel(root, path)
	if err != nil {
		return path
	}
	return r
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestUntranslated(t *testing.T) {
	page := strings.Join([]string{
		"# Title",
		"<!-- doctest: rabbitmq 3 prints",
		"old output",
		"-->",
		"```console",
		"$ curl localhost:8000/pong",
		"```",
		"```mermaid",
		"flowchart LR",
		"    you([you]) --> gw",
		"```",
		"Text that is translated.",
	}, "\n")
	got := untranslated(page)
	want := []untranslatedPart{
		{"doctest comment", 2, "<!-- doctest: rabbitmq 3 prints\nold output\n-->"},
		{"fenced block", 5, "```console\n$ curl localhost:8000/pong\n```"},
		{"fenced block", 8, "```mermaid (a diagram, translated)"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("untranslated:\n got %+v\nwant %+v", got, want)
	}
}
