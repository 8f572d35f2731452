package doctest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// shell is one bash session, so that a variable a chapter sets in one
// command is there in the next, as in the reader's terminal.
type shell struct {
	cmd    *exec.Cmd
	stdin  *os.File
	chunks chan []byte // what bash printed, stdout and stderr together
	buf    bytes.Buffer
}

const doneMarker = "__DOCTEST_DONE__"

var doneRE = regexp.MustCompile(`\n` + doneMarker + ` (\d+)\n`)

func mustShell(t *testing.T, dir string, env []string) *shell {
	t.Helper()
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", "--norc", "--noprofile")
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, outW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start bash: %v", err)
	}
	inR.Close()
	outW.Close()
	s := &shell{cmd: cmd, stdin: inW, chunks: make(chan []byte, 64)}
	go func() {
		defer close(s.chunks)
		for {
			b := make([]byte, 32<<10)
			n, err := outR.Read(b)
			if n > 0 {
				s.chunks <- b[:n]
			}
			if err != nil {
				outR.Close()
				return
			}
		}
	}()
	t.Cleanup(func() {
		inW.Close()
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	return s
}

// run runs command and returns what it printed and its exit status. The
// command's stdin is /dev/null, so that it cannot read the next commands.
func (s *shell) run(command string, timeout time.Duration) (string, int, error) {
	if _, err := fmt.Fprintf(s.stdin, "{ %s\n} </dev/null 2>&1; printf '\\n%s %%d\\n' $?\n", command, doneMarker); err != nil {
		return "", 0, err
	}
	deadline := time.After(timeout)
	for {
		if loc := doneRE.FindSubmatchIndex(s.buf.Bytes()); loc != nil {
			b := s.buf.Bytes()
			out := string(b[:loc[0]])
			rc, _ := strconv.Atoi(string(b[loc[2]:loc[3]]))
			rest := append([]byte(nil), b[loc[1]:]...)
			s.buf.Reset()
			s.buf.Write(rest)
			return out, rc, nil
		}
		select {
		case c, ok := <-s.chunks:
			if !ok {
				return s.buf.String(), 0, fmt.Errorf("bash exited")
			}
			s.buf.Write(c)
		case <-deadline:
			// The session is unusable now: stop it, and its children.
			syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			return s.buf.String(), 0, fmt.Errorf("no answer within %s", timeout)
		}
	}
}

// outputLines splits output into lines without carriage returns (curl -i
// prints the headers with CRLF).
func outputLines(out string) []string {
	out = strings.ReplaceAll(out, "\r", "")
	out = strings.TrimSuffix(out, "\n")
	if out == "" {
		return nil
	}
	return strings.Split(out, "\n")
}
