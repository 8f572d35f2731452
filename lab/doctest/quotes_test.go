package doctest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"pingpong/lab/runner"
)

// quotingChapters are the chapters that walk through code: each must quote
// some, and link to what it quotes.
var quotingChapters = []string{"02", "04", "05", "06", "07", "08", "09"}

// TestQuotes checks every quote of every page in docs/ against its source,
// and that each chapter about code quotes some and links to every file it
// quotes.
func TestQuotes(t *testing.T) {
	root, err := runner.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	pages, err := filepath.Glob(filepath.Join(root, "docs", "*", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	quoted := map[string]int{} // chapter number -> quotes
	for _, page := range pages {
		text, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, page)
		quotes, err := parseQuotes(string(text))
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			continue
		}
		if filepath.Base(filepath.Dir(page)) == "tutorials" {
			quoted[filepath.Base(page)[:2]] += len(quotes)
		}
		for _, q := range quotes {
			src, err := os.ReadFile(filepath.Join(root, q.file))
			if err != nil {
				t.Errorf("%s:%d: %v", rel, q.line, err)
				continue
			}
			lines, err := quoteSource(q.file, q.name, src)
			if err != nil {
				t.Errorf("%s:%d: %v", rel, q.line, err)
				continue
			}
			if problem := matchQuote(q.body, lines); problem != "" {
				t.Errorf("%s:%d: the quote of %s %s no longer matches the code; copy it again from the source. %s", rel, q.line, q.file, q.name, problem)
			}
			link, _ := filepath.Rel(filepath.Dir(page), filepath.Join(root, q.file))
			if !strings.Contains(string(text), "]("+filepath.ToSlash(link)) {
				t.Errorf("%s:%d: quotes %s but does not link to it (](%s))", rel, q.line, q.file, link)
			}
		}
	}
	for _, n := range quotingChapters {
		if quoted[n] == 0 {
			t.Errorf("chapter %s quotes no code; it walks through code, so quote the excerpt it is about, with <!-- doctest: quote FILE NAME -->", n)
		}
	}
}

func TestMatchQuote(t *testing.T) {
	source := strings.Split("func f() {\n\ta := 1\n\tb := 2\n\tc := 3\n\treturn a + b + c\n}", "\n")
	tests := []struct {
		quote string
		ok    bool
	}{
		{"a := 1\nb := 2", true},                           // dedented
		{"func f() {\n\t// ...\n\treturn a + b + c", true}, // an elision
		{"b := 2\na := 1", false},                          // out of order
		{"a := 1\nc := 3", false},                          // a gap not marked
		{"c := 3\n// ...\na := 1", false},                  // pieces out of order
		{"a := 10", false},
		{"// ...", false}, // nothing quoted
	}
	for _, tt := range tests {
		got := matchQuote(strings.Split(tt.quote, "\n"), source)
		if (got == "") != tt.ok {
			t.Errorf("matchQuote(%q) = %q, want ok=%v", tt.quote, got, tt.ok)
		}
	}
}

func TestParseQuotes(t *testing.T) {
	quotes, err := parseQuotes("text\n<!-- doctest: quote service01/confirm.go publishConfirmed -->\n```go\nx := 1\n```\n<!-- doctest: quote nginx/x.conf -->\n\n```nginx\ny;\n```\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(quotes) != 2 || quotes[0].file != "service01/confirm.go" || quotes[0].name != "publishConfirmed" ||
		strings.Join(quotes[0].body, "|") != "x := 1" || quotes[1].name != "" || quotes[1].line != 6 {
		t.Errorf("parseQuotes = %+v", quotes)
	}
	if _, err := parseQuotes("<!-- doctest: quote a.go f -->\ntext\n"); err == nil {
		t.Error("a quote directive before no block was accepted")
	}
}
