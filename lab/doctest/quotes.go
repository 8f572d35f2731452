package doctest

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"strings"
)

// quote is a chapter's excerpt of a source file, announced by
// <!-- doctest: quote FILE NAME -->.
type quote struct {
	line int      // of the directive, in the chapter
	file string   // from the repository's root
	name string   // the declaration or text it quotes; "" for anywhere
	body []string // the block's lines
}

// parseQuotes returns the quotes of a chapter.
func parseQuotes(text string) ([]quote, error) {
	var quotes []quote
	lines := splitLines(text)
	for i := 0; i < len(lines); i++ {
		m := directiveRE.FindStringSubmatch(strings.TrimSpace(lines[i]))
		if m == nil || m[1] != "quote" {
			continue
		}
		q := quote{line: i + 1}
		q.file, q.name, _ = strings.Cut(m[2], " ")
		q.name = strings.TrimSpace(q.name)
		if q.file == "" {
			return nil, fmt.Errorf("line %d: doctest: quote names no file", i+1)
		}
		j := i + 1
		for j < len(lines) && strings.TrimSpace(lines[j]) == "" {
			j++
		}
		fence, _, ok := "", "", false
		if j < len(lines) {
			fence, _, ok = openingFence(lines[j])
		}
		if !ok {
			return nil, fmt.Errorf("line %d: doctest: quote must come right before a code block", i+1)
		}
		end := j + 1
		for end < len(lines) && strings.TrimSpace(lines[end]) != fence {
			end++
		}
		if end == len(lines) {
			return nil, fmt.Errorf("line %d: the code block is never closed", j+1)
		}
		q.body = lines[j+1 : end]
		quotes = append(quotes, q)
		i = end
	}
	return quotes, nil
}

// isElision reports whether a quoted line stands for lines left out.
func isElision(line string) bool {
	switch strings.TrimSpace(line) {
	case "...", "// ...", "# ...":
		return true
	}
	return false
}

// matchQuote checks that quoted is an excerpt of source: split at its
// elisions, each piece appears in source as consecutive lines, in order.
// Indentation is ignored (an excerpt may be dedented), the rest of each
// line is compared as it is. It returns "" or what does not match.
func matchQuote(quoted, source []string) string {
	norm := func(l string) string { return strings.TrimSpace(l) }
	var pieces [][]string
	piece := []string{}
	for _, l := range quoted {
		if isElision(l) {
			if len(piece) > 0 {
				pieces = append(pieces, piece)
			}
			piece = []string{}
			continue
		}
		piece = append(piece, norm(l))
	}
	if len(piece) > 0 {
		pieces = append(pieces, piece)
	}
	if len(pieces) == 0 {
		return "the quote is empty"
	}
	from := 0
	for _, p := range pieces {
		at := -1
		for k := from; k+len(p) <= len(source); k++ {
			ok := true
			for n := range p {
				if norm(source[k+n]) != p[n] {
					ok = false
					break
				}
			}
			if ok {
				at = k
				break
			}
		}
		if at < 0 {
			return fmt.Sprintf("these lines are not in the source (after what the quote matched before them):\n\t%s", strings.Join(p, "\n\t"))
		}
		from = at + len(p)
	}
	return ""
}

// quoteSource returns the lines a quote may be taken from: a Go
// declaration's, from its doc comment to its end; in another file, from the
// first line containing name; with no name, the whole file.
func quoteSource(path, name string, src []byte) ([]string, error) {
	lines := strings.Split(string(src), "\n")
	if name == "" {
		return lines, nil
	}
	if !strings.HasSuffix(path, ".go") {
		for i, l := range lines {
			if strings.Contains(l, name) {
				return lines[i:], nil
			}
		}
		return nil, fmt.Errorf("%s has no %q", path, name)
	}
	start, end, err := declLines(path, src, name)
	if err != nil {
		return nil, err
	}
	return lines[start-1 : end], nil
}

// declLines returns the first and last line (1-based) of the declaration
// name in a Go file, doc comment included: a function, a method written
// Type.Method, or a type.
func declLines(path string, src []byte, name string) (start, end int, err error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, src, parser.ParseComments|parser.SkipObjectResolution)
	if err != nil {
		return 0, 0, err
	}
	recv, fn, isMethod := strings.Cut(name, ".")
	if !isMethod {
		fn, recv = name, ""
	}
	span := func(doc *ast.CommentGroup, n ast.Node) (int, int, error) {
		from := n.Pos()
		if doc != nil {
			from = doc.Pos()
		}
		return fset.Position(from).Line, fset.Position(n.End()).Line, nil
	}
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			if d.Name.Name != fn {
				continue
			}
			if (recv == "" && d.Recv == nil) || (recv != "" && d.Recv != nil && receiverName(d.Recv.List[0].Type) == recv) {
				return span(d.Doc, d)
			}
		case *ast.GenDecl:
			if isMethod {
				continue
			}
			for _, s := range d.Specs {
				if ts, ok := s.(*ast.TypeSpec); ok && ts.Name.Name == name {
					doc := ts.Doc
					if doc == nil && len(d.Specs) == 1 {
						doc = d.Doc
					}
					return span(doc, d)
				}
			}
		}
	}
	return 0, 0, fmt.Errorf("%s declares no %s", path, name)
}

func receiverName(e ast.Expr) string {
	switch t := e.(type) {
	case *ast.StarExpr:
		return receiverName(t.X)
	case *ast.IndexExpr: // a generic receiver, T[K]
		return receiverName(t.X)
	case *ast.Ident:
		return t.Name
	}
	return ""
}
