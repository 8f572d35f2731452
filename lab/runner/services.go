package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// buildServices compiles the named services into binDir with one go build,
// from the repository root (the go.work there ties the modules together).
func buildServices(ctx context.Context, root, binDir string, flags []string, names ...string) error {
	if len(names) == 0 {
		return nil
	}
	args := append([]string{"build", "-o", binDir + string(os.PathSeparator)}, flags...)
	for _, n := range names {
		args = append(args, "./"+n)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", strings.Join(names, " "), err, out)
	}
	return nil
}

// service is one of the lab's Go services, run from its built binary.
type service struct {
	name string
	bin  string
	dir  string   // working directory
	env  []string // its whole environment
	port int
	// readyLimit is how long start waits for /readyz to answer 200.
	readyLimit time.Duration
	proc       *process
}

func (s *service) start(logPath string, echo io.Writer) error {
	cmd := exec.Command(s.bin)
	cmd.Dir, cmd.Env = s.dir, s.env
	p, err := startProcess(s.name, cmd, logPath, echo, syscall.SIGTERM)
	if err != nil {
		return err
	}
	s.proc = p
	return nil
}

func (s *service) stop() {
	if s.proc != nil {
		s.proc.stop(20 * time.Second)
	}
}

func (s *service) kill() {
	if s.proc != nil {
		s.proc.kill()
	}
}

// waitHTTP polls url until it answers 200, the process exits, or limit passes.
// On failure it says what the last answer was, since a service's /readyz
// explains why it is not ready.
func waitHTTP(ctx context.Context, name, url string, proc *process, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	last := "no answer yet"
	for {
		if proc != nil && proc.exited() {
			return fmt.Errorf("%s exited while starting (%v); its log %s ends with:\n%s", name, proc.exitStatus(), proc.log, proc.tail(10))
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s answered %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
		} else if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%s did not get ready within %s: %s", name, limit, last)
			}
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// binPath is where a service's binary is built.
func binPath(state, name string) string { return filepath.Join(state, "bin", name) }
