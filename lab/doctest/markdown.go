// Package doctest keeps the documentation true. Its tests run every
// tutorial chapter's commands against a lab started for that chapter and
// compare what they print with what the chapter shows, check the OpenAPI
// description and docs/lab.http against the running lab, check the
// configuration reference against .env.example and the services' config
// structs, and check every relative link and #anchor in docs/ and the README.
//
// A chapter is ordinary Markdown. What the harness runs:
//
//   - a fenced block with the info string "console": each line starting
//     with "$ " is a command (a line ending in "\" continues on the next);
//     the lines up to the next command are its expected output, in which
//     {uuid}, {time}, {reqid}, {int}, {cursor} and {any} stand for what
//     changes between runs, and a line "..." stands for any number of lines;
//   - a fenced "sh" block whose only line is "make run" or
//     "make run PARTS='...'": the harness starts those parts of its own lab
//     (it never runs make run itself, a foreground command). Variables
//     before it, as in "SERVICE02_PORT=8003 make run PARTS=service02", start
//     the parts as a second lab with that environment beside the first, as
//     a second terminal would; a port among them is moved to a free one;
//   - HTML comments, invisible on the rendered page:
//     <!-- doctest: stop service02 --> stops parts, as Ctrl-C in the terminal
//     running them would; <!-- doctest: kill rabbitmq --> kills parts with
//     SIGKILL, where the reader kills a process, as a crash would;
//     <!-- doctest: eventually --> before a console block
//     reruns each of its commands until the output matches, for up to 30 s
//     (for what happens asynchronously, such as a message reaching
//     service02); <!-- doctest: eventually 90s --> for up to 90 s;
//     <!-- doctest: attempts 3 --> gives each command of the next console
//     block up to 3 runs to print what the block shows, for an experiment
//     whose outcome is a matter of chance (a broker killed while an ack is
//     in flight), as the chapter tells the reader to run it again; and
//     <!-- doctest: skip --> leaves the next block out; and
//     <!-- doctest: copy --> runs the chapter's commands in a copy of the
//     repository (its files as they are, committed or not), for a chapter
//     whose commands change them, as a break-it experiment does.
//   - a command that fails shows it: when the expected output ends with a
//     line "exit status N" (what go run prints when the program it ran
//     fails), the command must exit with status N; otherwise with 0.
//   - a chapter gives both roads, natively (make run) and with Docker
//     (docker compose). A fenced "sh" block whose every line is a docker
//     command (or name=$(docker ...), which keeps its output, or export or
//     unset COMPOSE_FILE) is the Docker road's: the Docker harness (make test-docker)
//     runs each line and wants exit status 0, and the native harness leaves
//     it out, as it leaves the Docker harness the "make run" blocks and the
//     stop and kill directives. A console block after
//     <!-- doctest: native --> or <!-- doctest: docker --> runs on that road
//     only; any other console block runs on both;
//   - where an older broker prints something else, the chapter shows what
//     the compose image's RabbitMQ 4.3 prints, says in its text what 3.x
//     prints, and gives that output to the harness in a comment before the
//     block, whose only command it replaces the expected output of on a
//     RabbitMQ 3.x broker (Debian 12's 3.10):
//     <!-- doctest: rabbitmq 3 prints
//     ...the lines...
//     -->
//
// A chapter that explains code quotes it: <!-- doctest: quote FILE NAME -->
// before a fenced block says that the block is an excerpt of FILE (a path
// from the repository's root), of its declaration NAME in a Go file (a
// function, Type.Method, or a type), or of the text from the first line
// containing NAME in any other file; NAME may be left out to quote from
// anywhere in the file. A line "// ...", "# ..." or "..." in the block
// stands for lines left out. TestQuotes checks every quote against the
// source (quotes.go), so a quote cannot drift from the code.
//
// Commands use the default ports (localhost:8000, 8001, 8002, 5672, 15672)
// and the .lab/ folder as a reader types them; the harness rewrites them to
// its lab's free ports and state folder, and back in the output.
package doctest

import (
	"bufio"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// stepKind is what one step of a chapter does.
type stepKind int

const (
	stepStart   stepKind = iota // start parts of the lab
	stepStop                    // stop parts of the lab
	stepKill                    // kill parts of the lab with SIGKILL
	stepCommand                 // run a command and compare its output
	stepDocker                  // run docker commands, which must succeed
	stepCopy                    // run the chapter's commands in a copy of the repository
)

// The roads a step belongs to: both, or one of them.
const (
	roadBoth   = ""
	roadNative = "native"
	roadDocker = "docker"
)

// step is one thing the harness does, in the chapter's order.
type step struct {
	kind       stepKind
	road       string   // roadBoth, roadNative or roadDocker
	line       int      // where it is in the chapter, for messages
	parts      []string // stepStart, stepStop
	env        []string // stepStart: variables set before make run (KEY=value)
	command    string   // stepCommand
	commands   []string // stepDocker
	expected   []string // stepCommand
	expected3  []string // stepCommand: what RabbitMQ 3.x prints instead, if it differs
	eventually bool     // stepCommand: rerun until the output matches
	// eventuallyFor: how long an eventually block's commands may take to
	// match, when the block says (eventually 90s); 30 s otherwise
	eventuallyFor time.Duration
	attempts      int // stepCommand: runs it may take to match, for an experiment left to chance
}

var (
	directiveRE = regexp.MustCompile(`^<!--\s*doctest:\s*(\w+)\s*(.*?)\s*-->$`)
	olderRE     = regexp.MustCompile(`^<!--\s*doctest:\s*rabbitmq 3 prints$`)
	makeRunRE   = regexp.MustCompile(`^((?:[A-Z][A-Z0-9_]*=\S+\s+)*)make run(?:\s+PARTS=(?:'([^']*)'|"([^"]*)"|(\S+)))?$`)
)

// parseChapter reads the steps of a chapter.
func parseChapter(text string) ([]step, error) {
	var (
		steps         []step
		skip          bool
		eventually    bool
		eventuallyFor time.Duration // of an eventually block, if not the default
		attempts      int           // of the next console block's commands
		road          string        // of the next block, from a native or docker directive
		older         []string      // a "rabbitmq 3 prints" comment's lines, for the next block
		olderLine     int
	)
	lines := splitLines(text)
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		if olderRE.MatchString(line) {
			olderLine = i + 1
			older = []string{}
			for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "-->"; i++ {
				older = append(older, lines[i])
			}
			if i == len(lines) {
				return nil, fmt.Errorf("line %d: the doctest comment is never closed with a line -->", olderLine)
			}
			continue
		}
		if m := directiveRE.FindStringSubmatch(line); m != nil {
			switch m[1] {
			case "skip":
				skip = true
			case "eventually":
				eventually, eventuallyFor = true, 0
				if m[2] != "" {
					d, err := time.ParseDuration(m[2])
					if err != nil || d <= 0 {
						return nil, fmt.Errorf("line %d: doctest: eventually takes a duration, such as 90s, or nothing, got %q", i+1, m[2])
					}
					eventuallyFor = d
				}
			case "attempts":
				n, err := strconv.Atoi(m[2])
				if err != nil || n < 2 {
					return nil, fmt.Errorf("line %d: doctest: attempts wants a number of runs, 2 or more, got %q", i+1, m[2])
				}
				attempts = n
			case "native", "docker":
				road = m[1]
			case "copy":
				steps = append(steps, step{kind: stepCopy, road: roadNative, line: i + 1})
			case "quote":
				// The next block is an excerpt of the code, which
				// TestQuotes checks; there is nothing to run.
			case "stop", "kill":
				parts := strings.Fields(m[2])
				if len(parts) == 0 {
					return nil, fmt.Errorf("line %d: doctest: %s names no parts", i+1, m[1])
				}
				kind := stepStop
				if m[1] == "kill" {
					kind = stepKill
				}
				steps = append(steps, step{kind: kind, road: roadNative, line: i + 1, parts: parts})
			default:
				return nil, fmt.Errorf("line %d: unknown doctest directive %q", i+1, m[1])
			}
			continue
		}
		fence, info, ok := openingFence(lines[i])
		if !ok {
			continue
		}
		start := i + 1
		end := start
		for end < len(lines) && strings.TrimSpace(lines[end]) != fence {
			end++
		}
		if end == len(lines) {
			return nil, fmt.Errorf("line %d: the code block is never closed", i+1)
		}
		body := lines[start:end]
		i = end
		if skip {
			skip, eventually, road, attempts = false, false, roadBoth, 0
			continue
		}
		switch info {
		case "sh":
			if len(body) == 1 {
				if m := makeRunRE.FindStringSubmatch(strings.TrimSpace(body[0])); m != nil {
					parts := strings.Fields(m[2] + m[3] + m[4])
					steps = append(steps, step{kind: stepStart, road: roadNative, line: start + 1, parts: parts, env: strings.Fields(m[1])})
				}
			}
			if cmds, ok := dockerCommands(body); ok {
				steps = append(steps, step{kind: stepDocker, road: roadDocker, line: start + 1, commands: cmds})
			}
		case "console":
			cmds, err := parseConsole(body, start+1, eventually)
			if err != nil {
				return nil, err
			}
			for k := range cmds {
				cmds[k].road = road
				cmds[k].attempts = attempts
				cmds[k].eventuallyFor = eventuallyFor
			}
			if older != nil {
				if len(cmds) != 1 {
					return nil, fmt.Errorf("line %d: \"rabbitmq 3 prints\" goes before a block with one command; the next has %d", olderLine, len(cmds))
				}
				cmds[0].expected3, older = older, nil
			}
			steps = append(steps, cmds...)
		}
		if older != nil && info != "console" {
			return nil, fmt.Errorf("line %d: \"rabbitmq 3 prints\" must come right before a console block", olderLine)
		}
		eventually, road, attempts = false, roadBoth, 0
	}
	if older != nil {
		return nil, fmt.Errorf("line %d: \"rabbitmq 3 prints\" is followed by no console block", olderLine)
	}
	return steps, nil
}

// dockerLineRE is a docker command, with variables set before it
// (GATEWAY_RATE_LIMIT=100r/s docker compose ...), or one whose output a shell
// variable keeps: name=$(docker ...); or the export or unset of
// COMPOSE_FILE, which names the compose files for the commands after it.
var dockerLineRE = regexp.MustCompile(`^(?:(?:export COMPOSE_FILE=\S+|unset COMPOSE_FILE)$|(?:[A-Z][A-Z0-9_]*=\S+\s+)*(?:[a-z_][a-z0-9_]*=\$\()?docker )`)

// dockerCommands returns the lines of an sh block that are all docker
// commands, which the Docker road runs.
func dockerCommands(body []string) ([]string, bool) {
	var cmds []string
	for _, line := range body {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if !dockerLineRE.MatchString(line) {
			return nil, false
		}
		cmds = append(cmds, line)
	}
	return cmds, len(cmds) > 0
}

// parseConsole reads the commands and expected output of a console block
// whose first line is line first of the chapter.
func parseConsole(body []string, first int, eventually bool) ([]step, error) {
	var steps []step
	for i := 0; i < len(body); i++ {
		if !strings.HasPrefix(body[i], "$ ") {
			return nil, fmt.Errorf("line %d: a console block must start with a command (\"$ \"), got %q", first+i, body[i])
		}
		s := step{kind: stepCommand, line: first + i, eventually: eventually}
		cmd := strings.TrimPrefix(body[i], "$ ")
		for strings.HasSuffix(cmd, `\`) && i+1 < len(body) {
			i++
			cmd += "\n" + strings.TrimPrefix(body[i], "> ")
		}
		s.command = cmd
		for i+1 < len(body) && !strings.HasPrefix(body[i+1], "$ ") {
			i++
			s.expected = append(s.expected, body[i])
		}
		steps = append(steps, s)
	}
	return steps, nil
}

// openingFence reports whether line opens a fenced code block, with the
// fence that closes it and the block's info string.
func openingFence(line string) (fence, info string, ok bool) {
	t := strings.TrimSpace(line)
	for _, f := range []string{"```", "~~~"} {
		if strings.HasPrefix(t, f) {
			n := len(t) - len(strings.TrimLeft(t, f[:1]))
			return t[:n], strings.TrimSpace(t[n:]), true
		}
	}
	return "", "", false
}

func splitLines(text string) []string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines
}

// placeholders are the tokens expected output may use for what changes
// from run to run.
var placeholders = map[string]string{
	"{uuid}":   `[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`,
	"{time}":   `\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)`,
	"{reqid}":  `[A-Za-z0-9._-]{1,64}`,
	"{int}":    `\d+`,
	"{cursor}": `[A-Za-z0-9_=-]+`,
	"{any}":    `.*`,
}

// linePattern turns one line of expected output into a regular expression.
func linePattern(line string) *regexp.Regexp {
	p := regexp.QuoteMeta(strings.TrimRight(line, " \t"))
	for token, re := range placeholders {
		p = strings.ReplaceAll(p, regexp.QuoteMeta(token), re)
	}
	return regexp.MustCompile("^" + p + "$")
}

// matchOutput reports whether the actual lines match the expected ones.
func matchOutput(expected, actual []string) bool {
	if len(expected) == 0 {
		return len(actual) == 0
	}
	if strings.TrimSpace(expected[0]) == "..." {
		for k := 0; k <= len(actual); k++ {
			if matchOutput(expected[1:], actual[k:]) {
				return true
			}
		}
		return false
	}
	if len(actual) == 0 || !linePattern(expected[0]).MatchString(strings.TrimRight(actual[0], " \t")) {
		return false
	}
	return matchOutput(expected[1:], actual[1:])
}
