package compose

import (
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, ...
	args string
	line int
}

func (in instruction) String() string { return in.cmd + " " + in.args }

// mustParseDockerfile reads a Dockerfile's instructions. It knows what these
// Dockerfiles use: comments, blank lines and backslash continuations.
func mustParseDockerfile(tb testing.TB, path string) []instruction {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	var (
		out   []instruction
		cur   []string
		start int
	)
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if len(cur) == 0 {
			start = i + 1
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			cur = append(cur, strings.TrimSpace(cont))
			continue
		}
		cur = append(cur, line)
		cmd, args, _ := strings.Cut(strings.Join(cur, " "), " ")
		out = append(out, instruction{strings.ToUpper(cmd), strings.TrimSpace(args), start})
		cur = nil
	}
	if len(cur) > 0 {
		tb.Fatalf("%s: ends inside a continued line", path)
	}
	return out
}

// stages splits instructions at each FROM.
func stages(ins []instruction) [][]instruction {
	var out [][]instruction
	for _, in := range ins {
		if in.cmd == "FROM" {
			out = append(out, nil)
		}
		if len(out) > 0 {
			out[len(out)-1] = append(out[len(out)-1], in)
		}
	}
	return out
}

// goLine returns the major.minor of a go.work or go.mod's go directive.
func goLine(tb testing.TB, path string) string {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)(\.\d+)?\s*$`).FindSubmatch(data)
	if m == nil {
		tb.Fatalf("%s has no go line", path)
	}
	return string(m[1])
}

// index returns the position of the first instruction of a stage for which
// match is true, or -1.
func index(stage []instruction, match func(instruction) bool) int {
	return slices.IndexFunc(stage, match)
}

func is(cmd, args string) func(instruction) bool {
	return func(in instruction) bool { return in.cmd == cmd && in.args == args }
}

func TestDockerfiles(t *testing.T) {
	root := repoRoot(t)
	goWork := goLine(t, filepath.Join(root, "go.work"))
	example := mustEnvExample(t)
	p := mustLoadProject(t, example)
	for _, name := range []string{"service01", "service02"} {
		t.Run(name, func(t *testing.T) {
			st := stages(mustParseDockerfile(t, filepath.Join(root, name, "Dockerfile")))
			if len(st) != 2 {
				t.Fatalf("%d stages, want 2: build, then the runtime image", len(st))
			}
			build, final := st[0], st[1]

			// The toolchain is the one go.work asks for, and satisfies the
			// module's own go line (the image has no go.work).
			from := regexp.MustCompile(`^golang:(\d+\.\d+)-bookworm AS build$`).FindStringSubmatch(build[0].args)
			if from == nil {
				t.Fatalf("first stage is %q, want FROM golang:<go.work's version>-bookworm AS build", build[0])
			}
			if from[1] != goWork {
				t.Errorf("golang image %s, but go.work says go %s", from[1], goWork)
			}
			if mod := goLine(t, filepath.Join(root, name, "go.mod")); mod != from[1] {
				t.Errorf("golang image %s, but %s/go.mod says go %s", from[1], name, mod)
			}

			// Dependencies are downloaded in a layer that only go.mod and
			// go.sum invalidate; the sources come after.
			copyMod := index(build, is("COPY", "go.mod go.sum ./"))
			download := index(build, is("RUN", "go mod download"))
			copySrc := index(build, is("COPY", ". ."))
			compile := index(build, func(in instruction) bool {
				return in.cmd == "RUN" && strings.Contains(in.args, "go build")
			})
			if copyMod < 0 || download < 0 || copySrc < 0 || compile < 0 {
				t.Fatalf("build stage lacks one of COPY go.mod go.sum ./, RUN go mod download, COPY . ., RUN go build:\n%v", build)
			}
			if !(copyMod < download && download < copySrc && copySrc < compile) {
				t.Errorf("build stage order: want COPY go.mod go.sum ./, RUN go mod download, COPY . ., RUN go build; got\n%v", build)
			}
			for _, flag := range []string{"CGO_ENABLED=0 ", "-trimpath", `-ldflags="-s -w"`, "-o /out/" + name + " "} {
				if !strings.Contains(build[compile].args+" ", flag) {
					t.Errorf("go build lacks %q: %s", strings.TrimSpace(flag), build[compile])
				}
			}

			if got, want := final[0].args, "gcr.io/distroless/static-debian12:nonroot"; got != want {
				t.Errorf("runtime image %q, want %q", got, want)
			}
			for _, want := range []instruction{
				{cmd: "COPY", args: "--from=build /out/" + name + " /" + name},
				{cmd: "USER", args: "nonroot:nonroot"},
				{cmd: "EXPOSE", args: example[strings.ToUpper(name)+"_PORT"]},
			} {
				if index(final, is(want.cmd, want.args)) < 0 {
					t.Errorf("runtime stage lacks %s", want)
				}
			}
			entry := index(final, func(in instruction) bool { return in.cmd == "ENTRYPOINT" })
			if entry < 0 {
				t.Fatal("no ENTRYPOINT")
			}
			// The exec (vector) form: the service is PID 1 and gets SIGTERM.
			var argv []string
			if err := json.Unmarshal([]byte(final[entry].args), &argv); err != nil || !slices.Equal(argv, []string{"/" + name}) {
				t.Errorf("%s, want ENTRYPOINT [\"/%s\"] (exec form)", final[entry], name)
			}
			// The compose healthcheck runs the binary the image has.
			if hc := mustService(t, p, name).HealthCheck; hc == nil || len(hc.Test) < 2 || hc.Test[1] != "/"+name {
				t.Errorf("compose healthcheck does not run /%s", name)
			}
		})
	}
}

// mustBuildLikeDocker builds a service as `docker build` runs its
// Dockerfile's build stage: the build context is only what .dockerignore lets
// through; then each instruction in order, in a folder that stands for the
// stage's file system: WORKDIR, COPY from the context (a later COPY
// overwrites what an earlier RUN changed, as in the image), RUN with /out/
// moved into a temporary folder. There is no go.work in the stage. It
// returns the binary. What it cannot prove is the image itself: the base
// images and the distroless runtime (make test-docker builds those).
func mustBuildLikeDocker(tb testing.TB, name string) string {
	tb.Helper()
	src := filepath.Join(repoRoot(tb), name)
	f, err := os.Open(filepath.Join(src, ".dockerignore"))
	if err != nil {
		tb.Fatal(err)
	}
	patterns, err := ignorefile.ReadAll(f)
	f.Close()
	if err != nil {
		tb.Fatal(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		tb.Fatal(err)
	}

	tmp := tb.TempDir()
	ctxDir, stageFS, out := filepath.Join(tmp, "context"), filepath.Join(tmp, "stage"), filepath.Join(tmp, "out")
	var sent []string
	err = filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if excluded, err := pm.MatchesOrParentMatches(rel); err != nil || excluded {
			return err
		}
		sent = append(sent, rel)
		return copyFile(path, filepath.Join(ctxDir, rel))
	})
	if err != nil {
		tb.Fatal(err)
	}
	for _, want := range []string{"go.mod", "go.sum", "main.go"} {
		if !slices.Contains(sent, want) {
			tb.Errorf("build context lacks %s; it has %v", want, sent)
		}
	}
	for _, f := range sent {
		if strings.HasSuffix(f, "_test.go") || f == ".env" {
			tb.Errorf("build context includes %s", f)
		}
	}

	st := stages(mustParseDockerfile(tb, filepath.Join(src, "Dockerfile")))
	env := []string{"GOWORK=off", "GOFLAGS=", "GOTOOLCHAIN=local"}
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !slices.Contains([]string{"GOWORK", "GOFLAGS", "GOTOOLCHAIN", "CGO_ENABLED", "GOOS", "GOARCH"}, k) {
			env = append(env, kv)
		}
	}
	workdir := "/"
	for _, in := range st[0][1:] {
		switch in.cmd {
		case "WORKDIR":
			workdir = path.Join(workdir, in.args)
			if err := os.MkdirAll(filepath.Join(stageFS, workdir), 0o755); err != nil {
				tb.Fatal(err)
			}
		case "COPY":
			args := strings.Fields(in.args)
			if len(args) < 2 || strings.HasPrefix(args[0], "--") {
				tb.Fatalf("%s (line %d): this test copies only plain COPY <source>... <dest> from the context", in, in.line)
			}
			dest := path.Join(workdir, args[len(args)-1])
			for _, from := range args[:len(args)-1] {
				if err := copyTree(filepath.Join(ctxDir, from), filepath.Join(stageFS, dest), from == "."); err != nil {
					tb.Fatalf("%s (line %d): %v", in, in.line, err)
				}
			}
		case "RUN":
			cmd := exec.CommandContext(tb.Context(), "sh", "-c", strings.ReplaceAll(in.args, "/out/", out+"/"))
			cmd.Dir = filepath.Join(stageFS, workdir)
			cmd.Env = env
			if output, err := cmd.CombinedOutput(); err != nil {
				tb.Fatalf("%s (line %d) fails in the build stage: %v\n%s", in, in.line, err, output)
			}
		default:
			tb.Fatalf("%s (line %d): this test does not know what docker build does with %s", in, in.line, in.cmd)
		}
	}
	bin := filepath.Join(out, name)
	if _, err := os.Stat(bin); err != nil {
		tb.Fatalf("the build stage made no %s: %v", bin, err)
	}
	return bin
}

// copyTree copies a context file into the folder dest, or, when whole is
// true, the context folder's contents into dest, as COPY does.
func copyTree(from, dest string, whole bool) error {
	if !whole {
		return copyFile(from, filepath.Join(dest, filepath.Base(from)))
	}
	return filepath.WalkDir(from, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(from, p)
		if err != nil {
			return err
		}
		return copyFile(p, filepath.Join(dest, rel))
	})
}

func copyFile(from, to string) error {
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// TestImageHealthcheck builds each service from its Docker build context and
// runs the compose healthcheck's command with the container's environment
// against a stand-in /readyz: it must exit 0 when ready, 1 when not.
func TestImageHealthcheck(t *testing.T) {
	if testing.Short() {
		t.Skip("builds both services")
	}
	p := mustLoadProject(t, mustEnvExample(t))
	for _, name := range []string{"service01", "service02"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			bin := mustBuildLikeDocker(t, name)
			s := mustService(t, p, name)
			if s.HealthCheck == nil || len(s.HealthCheck.Test) < 2 || s.HealthCheck.Test[0] != "CMD" {
				t.Fatalf("healthcheck %v is not an exec-form command", s.HealthCheck)
			}
			args := s.HealthCheck.Test[2:]
			tests := []struct {
				status   int
				body     string
				wantExit int
			}{
				{http.StatusOK, `{"status":"ready"}`, 0},
				{http.StatusServiceUnavailable, `{"type":"about:blank","title":"Service Unavailable","status":503,"detail":"not connected to RabbitMQ","request_id":"x"}`, 1},
			}
			for _, tt := range tests {
				var asked atomic.Int32
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.Method == http.MethodGet && r.URL.Path == "/readyz" {
						asked.Add(1)
					}
					w.WriteHeader(tt.status)
					io.WriteString(w, tt.body)
				}))
				_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				env := containerEnv(s)
				env[strings.ToUpper(name)+"_PORT"] = port
				var envList []string
				for k, v := range env {
					envList = append(envList, k+"="+v)
				}
				cmd := exec.CommandContext(t.Context(), bin, args...)
				cmd.Dir = t.TempDir() // no .env to pick up
				cmd.Env = envList
				out, err := cmd.CombinedOutput()
				srv.Close()

				exit := 0
				var exitErr *exec.ExitError
				if errors.As(err, &exitErr) {
					exit = exitErr.ExitCode()
				} else if err != nil {
					t.Fatal(err)
				}
				if exit != tt.wantExit {
					t.Errorf("%s %s with /readyz answering %d: exit %d, want %d\n%s", name, strings.Join(args, " "), tt.status, exit, tt.wantExit, out)
				}
				if asked.Load() == 0 {
					t.Errorf("%s %s never asked GET /readyz on SERVICE_PORT %s\n%s", name, strings.Join(args, " "), port, out)
				}
				if tt.wantExit != 0 && len(strings.TrimSpace(string(out))) == 0 {
					t.Errorf("%s %s failed without saying why", name, strings.Join(args, " "))
				}
			}
		})
	}
}
