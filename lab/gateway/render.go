// Package gateway renders the lab's nginx configuration template.
//
// Both ways of running the lab use the same template (nginx/templates/):
// docker compose lets the official nginx image render it, and the native lab
// renders it with Render, which follows the image's rules so that every native
// run proves the file compose uses.
package gateway

import (
	"regexp"
	"strings"
)

// Filter is the NGINX_ENVSUBST_FILTER the compose file sets: only variables
// whose names match it are substituted, so nginx's own variables ($host,
// $request_id, ...) are never touched.
const Filter = `^(GATEWAY|SERVICE0[12])_`

// Render substitutes variables the way the nginx image's
// 20-envsubst-on-templates.sh does: it lists the names in env that match
// filter and lets envsubst replace $NAME and ${NAME} for those names only.
// Anything else that looks like a variable is left as it is.
func Render(template string, env map[string]string, filter string) (string, error) {
	re, err := regexp.Compile(filter)
	if err != nil {
		return "", err
	}
	var out strings.Builder
	for i := 0; i < len(template); {
		if template[i] != '$' {
			next := strings.IndexByte(template[i:], '$')
			if next < 0 {
				out.WriteString(template[i:])
				break
			}
			out.WriteString(template[i : i+next])
			i += next
			continue
		}
		// template[i] == '$': a $NAME or ${NAME} reference, if a name follows.
		braced := i+1 < len(template) && template[i+1] == '{'
		start := i + 1
		if braced {
			start++
		}
		end := start
		for end < len(template) && isNameByte(template[end], end == start) {
			end++
		}
		name := template[start:end]
		refEnd := end
		if braced {
			if end >= len(template) || template[end] != '}' {
				name = "" // not a well-formed ${NAME}
			}
			refEnd = end + 1
		}
		value, ok := env[name]
		if name == "" || !ok || !re.MatchString(name) {
			out.WriteByte('$')
			i++
			continue
		}
		out.WriteString(value)
		i = refEnd
	}
	return out.String(), nil
}

// isNameByte reports whether b can stand in a shell variable name; a name
// does not start with a digit.
func isNameByte(b byte, first bool) bool {
	switch {
	case b == '_', 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z':
		return true
	case '0' <= b && b <= '9':
		return !first
	}
	return false
}
