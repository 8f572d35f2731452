package doctest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"pingpong/lab/runner"
)

// readerEnv makes a test lab log as the reader's lab does with the defaults
// of .env.example (runner.NewTest logs at debug level for the other tests).
var readerEnv = []string{"LOG_LEVEL=info"}

// chapterBuildFlags build a chapter's services as make run does: without
// the race detector, which the service, end-to-end and fault tests run
// under load. Race-built services cost the chapters a sixth of their time
// (369 s against 307 s for TestTutorials on RabbitMQ 3.10) and are not what
// the reader runs.
var chapterBuildFlags []string

const (
	commandTimeout = 5 * time.Minute // go run may build first; a fault scenario takes a minute or two
	eventuallyFor  = 30 * time.Second
)

// TestTutorials runs every chapter in docs/tutorials, each against a lab of
// its own on free ports.
func TestTutorials(t *testing.T) {
	eachChapter(t, runChapter)
}

// eachChapter parses every chapter in docs/tutorials and runs it with run,
// in parallel subtests named after the chapters, and the README's "Try it"
// as one more (readme_test.go).
func eachChapter(t *testing.T, run func(t *testing.T, root, name string, steps []step)) {
	root, err := runner.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	chapters, err := filepath.Glob(filepath.Join(root, "docs", "tutorials", "[0-9][0-9]-*.md"))
	if err != nil {
		t.Fatal(err)
	}
	if len(chapters) == 0 {
		t.Fatal("found no chapters in docs/tutorials")
	}
	for _, path := range chapters {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".md"), func(t *testing.T) {
			t.Parallel()
			text, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			steps, err := parseChapter(string(text))
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			run(t, root, filepath.Base(path), steps)
		})
	}
	t.Run("readme", func(t *testing.T) {
		t.Parallel()
		run(t, root, "readme", readmeSteps(t, root))
	})
}

// chapterLab is the lab one chapter runs against.
type chapterLab struct {
	lab     *runner.Lab
	running []string
	broker  string // RabbitMQ's version, once a step needed it
	// supervising: Lab.Wait runs, starting the cluster's nodes again
	supervising bool
}

// mustBrokerVersion asks the lab's broker for its version, which decides
// between a block's output and the one a "rabbitmq 3 prints" comment gives.
func mustBrokerVersion(t *testing.T, l *runner.Lab) string {
	t.Helper()
	c := l.Config()
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/api/overview", c.ManagementPort), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(c.RabbitMQUser, c.RabbitMQPass)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("ask the broker its version: %v", err)
	}
	defer resp.Body.Close()
	var o struct {
		Version string `json:"rabbitmq_version"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&o); err != nil || o.Version == "" {
		t.Fatalf("ask the broker its version: %s, %v", resp.Status, err)
	}
	return o.Version
}

func runChapter(t *testing.T, root, name string, steps []step) {
	var commands int
	for _, s := range steps {
		if s.kind == stepCommand && s.road != roadDocker {
			commands++
		}
	}
	if commands == 0 {
		t.Fatalf("%s has no console block to run", name)
	}
	dir := t.TempDir()
	// Variables before the chapter's first make run of the whole lab
	// (RABBITMQ_NODES=3 make run) are the lab's own.
	env := readerEnv
	for i, s := range steps {
		if s.kind == stepStart && s.road != roadDocker {
			if len(s.parts) == 0 && len(s.env) > 0 {
				env = append(slices.Clone(readerEnv), s.env...)
				steps[i].env = nil
			}
			break
		}
	}
	l, err := runner.NewOnFreePorts(dir, chapterBuildFlags, env...)
	if err != nil {
		t.Fatal(err)
	}
	cl := &chapterLab{lab: l}
	// make run supervises a cluster's nodes, starting one that died again
	// (runner.Lab.Wait); so does the chapter's lab.
	ctx, cancel := context.WithCancel(context.Background())
	supervised := make(chan struct{})
	t.Cleanup(func() {
		cancel()
		if cl.supervising {
			<-supervised
		}
		l.Stop()
		if t.Failed() {
			// t.TempDir is removed after the test; copy the logs out first.
			keep, err := os.MkdirTemp("", "doctest-"+name+"-")
			if err == nil {
				os.CopyFS(keep, os.DirFS(filepath.Join(dir, "logs")))
				t.Logf("the lab's logs are in %s", keep)
			}
		}
	})
	shellDir := root
	if slices.ContainsFunc(steps, func(s step) bool { return s.kind == stepCopy }) {
		shellDir = mustCopyRepo(t, root)
	}
	// A program the reader runs from the repository (go run ./service02
	// -per-minute) finds the broker through the variables .env would set;
	// here they point at the chapter's lab.
	sh := mustShell(t, shellDir, append(os.Environ(),
		"RABBITMQ_HOST=127.0.0.1",
		"RABBITMQ_PORT="+strconv.Itoa(l.Config().RabbitMQPort),
		// go run ./lab kill finds the chapter's lab in its state folder.
		"LAB_STATE="+dir,
	))
	// curl shows no progress meter when it writes to a terminal, as the
	// reader's does; here its output goes to a pipe.
	if _, _, err := sh.run(`curl() { command curl --no-progress-meter "$@"; }`, commandTimeout); err != nil {
		t.Fatal(err)
	}
	rw := newRewriter(l, dir)

	for _, s := range steps {
		if s.road == roadDocker {
			continue // make test-docker runs these
		}
		where := fmt.Sprintf("%s:%d", name, s.line)
		switch s.kind {
		case stepStart:
			if len(s.env) > 0 && restartsWith(s, cl.running) {
				// The chapter stopped these parts and starts them
				// again on the same ports with other variables.
				for _, p := range s.parts {
					if err := l.StartPartWith(ctx, p, s.env); err != nil {
						t.Fatalf("%s: start %s with %v: %v", where, p, s.env, err)
					}
					cl.running = append(cl.running, p)
				}
				continue
			}
			if len(s.env) > 0 {
				startBeside(t, l, rw, where, s)
				continue
			}
			parts := s.parts
			if len(parts) == 0 {
				parts = runner.Parts()
			}
			var toStart []string
			for _, p := range parts {
				if !slices.Contains(cl.running, p) {
					toStart = append(toStart, p)
				}
			}
			ordered, err := runner.ParseParts(toStart)
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			if err := l.Start(ctx, ordered); err != nil {
				t.Fatalf("%s: start %v: %v", where, ordered, err)
			}
			cl.running = append(cl.running, ordered...)
			if l.Config().Nodes > 1 && slices.Contains(ordered, "rabbitmq") && !cl.supervising {
				cl.supervising = true
				go func() {
					defer close(supervised)
					l.Wait(ctx) // its error: a part the chapter stopped
				}()
			}
		case stepStop, stepKill:
			for _, p := range s.parts {
				if !slices.Contains(cl.running, p) {
					t.Fatalf("%s: stop %s: it is not running", where, p)
				}
				stop := l.StopPart
				if s.kind == stepKill {
					stop = l.KillPart
				}
				if err := stop(p); err != nil {
					t.Fatalf("%s: stop %s: %v", where, p, err)
				}
				cl.running = slices.DeleteFunc(cl.running, func(q string) bool { return q == p })
			}
		case stepCommand:
			if len(cl.running) == 0 {
				t.Fatalf("%s: a command before any make run block", where)
			}
			if s.expected3 != nil {
				if cl.broker == "" {
					cl.broker = mustBrokerVersion(t, l)
				}
				if strings.HasPrefix(cl.broker, "3.") {
					s.expected = s.expected3
				}
			}
			runCommand(t, sh, rw, where, s)
		}
	}
}

func runCommand(t *testing.T, sh *shell, rw *rewriter, where string, s step) {
	t.Helper()
	cmd := rw.command(s.command)
	limit := eventuallyFor
	if s.eventuallyFor > 0 {
		limit = s.eventuallyFor
	}
	deadline := time.Now().Add(limit)
	for run := 1; ; run++ {
		out, rc, err := sh.run(cmd, commandTimeout)
		if err != nil {
			t.Fatalf("%s: $ %s\n%v; it printed:\n%s", where, s.command, err, out)
		}
		got := outputLines(rw.output(out))
		ok := (rc == 0 || expectsExit(s.expected, rc)) && matchOutput(s.expected, got)
		if ok {
			return
		}
		if run < s.attempts {
			t.Logf("%s: $ %s: run %d of %d did not print what the chapter shows; running it again", where, s.command, run, s.attempts)
			continue
		}
		if !s.eventually || time.Now().After(deadline) {
			t.Fatalf("%s: $ %s\nexit status %d; the page shows:\n%s\nit printed:\n%s",
				where, s.command, rc, strings.Join(s.expected, "\n"), strings.Join(got, "\n"))
		}
		time.Sleep(250 * time.Millisecond) // poll interval of an eventually block
	}
}

// expectsExit reports whether the expected output shows that the command
// fails with status rc: its last line is "exit status rc", as go run prints
// when the program it ran fails.
func expectsExit(expected []string, rc int) bool {
	return len(expected) > 0 && strings.TrimSpace(expected[len(expected)-1]) == fmt.Sprintf("exit status %d", rc)
}

// mustCopyRepo copies the repository's files, as they are in the working
// tree (tracked, and untracked but not ignored: no binaries, no .lab), to a
// new folder and returns it.
func mustCopyRepo(t *testing.T, root string) string {
	t.Helper()
	out, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Fatalf("list the repository's files: %v", err)
	}
	dst := t.TempDir()
	for _, name := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
		src := filepath.Join(root, name)
		info, err := os.Lstat(src)
		if err != nil || !info.Mode().IsRegular() {
			continue // deleted in the working tree, or not a plain file
		}
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		to := filepath.Join(dst, name)
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, data, info.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// restartsWith reports whether a make run with variables starts, in the
// lab, parts the chapter stopped, on their ports: it names parts and none
// of them runs, and it sets no port. Otherwise it is a second lab beside
// the first, on ports of its own.
func restartsWith(s step, running []string) bool {
	if len(s.parts) == 0 {
		return false
	}
	for _, p := range s.parts {
		if slices.Contains(running, p) {
			return false
		}
	}
	for _, kv := range s.env {
		if k, _, _ := strings.Cut(kv, "="); strings.HasSuffix(k, "_PORT") {
			return false
		}
	}
	return true
}

// startBeside starts parts as a second lab beside l, with the variables
// the chapter sets before make run: a second terminal running make run
// with its own environment. Its ports are moved to free ones, which rw
// learns.
func startBeside(t *testing.T, l *runner.Lab, rw *rewriter, where string, s step) {
	t.Helper()
	c := l.Config()
	environ := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"RABBITMQ_HOST=127.0.0.1",
		"RABBITMQ_PORT=" + strconv.Itoa(c.RabbitMQPort),
		"RABBITMQ_DEFAULT_USER=" + c.RabbitMQUser,
		"RABBITMQ_DEFAULT_PASS=" + c.RabbitMQPass,
		"LOG_LEVEL=info",
	}
	for _, kv := range s.env {
		k, v, _ := strings.Cut(kv, "=")
		if strings.HasSuffix(k, "_PORT") {
			ports, err := runner.FreePorts(1)
			if err != nil {
				t.Fatal(err)
			}
			rw.add(v, strconv.Itoa(ports[0]))
			v = strconv.Itoa(ports[0])
		}
		environ = append(environ, k+"="+v)
	}
	cfg, err := runner.LoadConfig(environ)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	parts, err := runner.ParseParts(s.parts)
	if err != nil || len(s.parts) == 0 || slices.Contains(parts, "rabbitmq") {
		t.Fatalf("%s: a second lab runs some of service01, service02 and nginx beside the first, got PARTS=%q", where, s.parts)
	}
	root, err := runner.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	beside := runner.New(cfg, runner.Options{Root: root, State: t.TempDir(), Env: environ, BuildFlags: chapterBuildFlags})
	t.Cleanup(beside.Stop)
	if err := beside.Start(context.Background(), parts); err != nil {
		t.Fatalf("%s: start %v beside the lab: %v", where, parts, err)
	}
}

// rewriter moves commands from the reader's default ports and .lab folder
// to the test lab's, and the output back.
type rewriter struct {
	toTest   map[string]string // default port -> test port
	toReader map[string]string // test port -> default port
	state    string
	names    *strings.Replacer // the reader's names in commands -> the test's, if any
}

func newRewriter(l *runner.Lab, state string) *rewriter {
	c := l.Config()
	ports := map[int]int{
		8000: c.GatewayPort, 8001: c.Service01Port, 8002: c.Service02Port,
		5672: c.RabbitMQPort, 15672: c.ManagementPort,
	}
	// A cluster's other nodes are on the ports after the first's.
	for i := 1; i < c.Nodes; i++ {
		ports[5672+i], ports[15672+i] = c.RabbitMQPort+i, c.ManagementPort+i
	}
	return newPortRewriter(ports, state)
}

// newPortRewriter maps the reader's default ports to a test's, and .lab/
// to state when state is not empty.
func newPortRewriter(ports map[int]int, state string) *rewriter {
	rw := &rewriter{toTest: map[string]string{}, toReader: map[string]string{}, state: state}
	for def, port := range ports {
		rw.toTest[strconv.Itoa(def)] = strconv.Itoa(port)
		rw.toReader[strconv.Itoa(port)] = strconv.Itoa(def)
	}
	return rw
}

// add maps one more of the reader's ports to a test port.
func (rw *rewriter) add(reader, test string) {
	rw.toTest[reader] = test
	rw.toReader[test] = reader
}

// hostPortRE is a port as commands and output name it: after a host, or in
// a native node's name (lab-5672@localhost).
var hostPortRE = regexp.MustCompile(`\b(localhost|127\.0\.0\.1):(\d+)\b|\blab-(\d+)@localhost\b`)

// rewritePort replaces the port in one match of hostPortRE.
func rewritePort(m string, ports map[string]string) string {
	if name, ok := strings.CutSuffix(m, "@localhost"); ok {
		if p, ok := ports[strings.TrimPrefix(name, "lab-")]; ok {
			return "lab-" + p + "@localhost"
		}
		return m
	}
	host, port, _ := strings.Cut(m, ":")
	if p, ok := ports[port]; ok {
		return host + ":" + p
	}
	return m
}

func (rw *rewriter) command(cmd string) string {
	cmd = hostPortRE.ReplaceAllStringFunc(cmd, func(m string) string { return rewritePort(m, rw.toTest) })
	if rw.names != nil {
		cmd = rw.names.Replace(cmd)
	}
	if rw.state == "" {
		return cmd
	}
	return strings.ReplaceAll(cmd, ".lab/", rw.state+"/")
}

func (rw *rewriter) output(out string) string {
	out = hostPortRE.ReplaceAllStringFunc(out, func(m string) string { return rewritePort(m, rw.toReader) })
	if rw.state == "" {
		return out
	}
	return strings.ReplaceAll(out, rw.state+"/", ".lab/")
}
