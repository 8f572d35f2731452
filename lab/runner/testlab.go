package runner

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
)

// NewTest makes a lab for tests: free ports, its state in dir, services built
// with the race detector, debug logs, then extraEnv. The gateway's rate
// limit is the shipped one, which lets a local load test through.
func NewTest(dir string, extraEnv ...string) (*Lab, error) {
	env := append([]string{"LOG_LEVEL=debug"}, extraEnv...)
	return NewOnFreePorts(dir, []string{"-race"}, env...)
}

// NewOnFreePorts makes a lab on free ports with its state in dir and the
// services built with buildFlags. Its services get only PATH, HOME, the
// ports, the lab's login and env, so a developer's .env or shell cannot
// change what a test or a benchmark sees.
func NewOnFreePorts(dir string, buildFlags []string, env ...string) (*Lab, error) {
	ports, err := FreePorts(4)
	if err != nil {
		return nil, err
	}
	// A cluster's nodes are on consecutive ports.
	nodes := 1
	if slices.Contains(env, "RABBITMQ_NODES=3") {
		nodes = 3
	}
	var runs [3]int // AMQP, management, Erlang distribution
	for i := range runs {
		if runs[i], err = FreeRun(nodes); err != nil {
			return nil, err
		}
	}
	environ := append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"GATEWAY_PORT=" + strconv.Itoa(ports[0]),
		"SERVICE01_PORT=" + strconv.Itoa(ports[1]),
		"SERVICE02_PORT=" + strconv.Itoa(ports[2]),
		"RABBITMQ_PORT=" + strconv.Itoa(runs[0]),
		"RABBITMQ_MANAGEMENT_PORT=" + strconv.Itoa(runs[1]),
		"RABBITMQ_DEFAULT_USER=lab",
		"RABBITMQ_DEFAULT_PASS=lab",
	}, env...)
	cfg, err := LoadConfig(environ)
	if err != nil {
		return nil, err
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	return New(cfg, Options{
		Root:       root,
		State:      dir,
		Env:        environ,
		BuildFlags: buildFlags,
		DistPort:   runs[2],
		EpmdPort:   ports[3],
	}), nil
}

// A lab starts its parts long after its ports are chosen (the services are
// built first), and ports the kernel hands out for :0 come from the range
// it also uses for outgoing connections, so one may be taken by then (curl,
// the services' connections to the broker, other test packages). Test labs'
// ports come from below that range instead, and none is handed out twice in
// one process.
const (
	portsFrom = 20000
	portsTo   = 32000 // Linux starts its ephemeral ports at 32768
)

var (
	portsMu   sync.Mutex
	portsUsed = map[int]bool{}
	claims    []*os.File // held open, so locked, until the process ends
)

// claimPort keeps other processes from choosing port p while this one
// lives: test packages run in parallel, each in a process of its own, and
// a lab binds its ports seconds after choosing them (its services are
// built first), so a check that the port is free is not enough. The claim
// is an exclusive flock on a file named for the port, which the kernel
// drops when the process ends, however it ends.
func claimPort(p int) bool {
	dir := filepath.Join(os.TempDir(), "pingpong-lab-ports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return true // no claims possible here: fall back to the check alone
	}
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(p)), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return true
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return false
	}
	claims = append(claims, f)
	return true
}

// FreeBrokerPort returns a free AMQP port for a test that runs the lab
// command, which derives the broker's Erlang ports from it (distribution on
// + 20000, epmd on + 21000): those are free and claimed too.
func FreeBrokerPort() (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		p := 5000 + rand.IntN(portsTo-21000-5000) // its epmd's below portsTo
		ok := true
		for _, q := range []int{p, p + 20000, p + 21000} {
			ok = ok && !portsUsed[q] && claimPort(q)
			if ok {
				portsUsed[q] = true
				l, err := net.Listen("tcp", ":"+strconv.Itoa(q))
				if err != nil {
					ok = false
					break
				}
				l.Close()
			}
		}
		if ok {
			return p, nil
		}
	}
	return 0, fmt.Errorf("no free AMQP port between 5000 and %d with its Erlang ports free", portsTo-21000)
}

// FreePorts returns n distinct TCP ports, free now, below the ephemeral range.
func FreePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		p, err := FreeRun(1)
		if err != nil {
			return nil, err
		}
		ports = append(ports, p)
	}
	return ports, nil
}

// FreeRun returns the first of n consecutive TCP ports, all free now, below
// the ephemeral range: a cluster's nodes are on consecutive ports.
func FreeRun(n int) (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 1000 {
		first := portsFrom + rand.IntN(portsTo-portsFrom-n)
		ok := true
		for p := first; ok && p < first+n; p++ {
			ok = !portsUsed[p] && claimPort(p) // claimed by this process now, whatever happens next
			if ok {
				portsUsed[p] = true
				l, err := net.Listen("tcp", ":"+strconv.Itoa(p))
				ok = err == nil
				if ok {
					l.Close()
				}
			}
		}
		if ok {
			return first, nil
		}
	}
	return 0, fmt.Errorf("no %d free consecutive ports between %d and %d", n, portsFrom, portsTo)
}

// Shared is one lab for a whole test package, started by the first test that
// asks for it. Declare it as a package variable and stop it in TestMain:
//
//	var lab runner.Shared
//
//	func TestMain(m *testing.M) { os.Exit(lab.Close(m.Run())) }
type Shared struct {
	Parts []string // what to start; empty means the whole lab
	Env   []string // extra environment for NewTest

	once sync.Once
	lab  *Lab
	dir  string
	err  error
}

// Get returns the running lab, starting it on first use.
func (s *Shared) Get(tb testing.TB) *Lab {
	tb.Helper()
	s.once.Do(func() {
		s.dir, s.err = os.MkdirTemp("", "lab-test-")
		if s.err != nil {
			return
		}
		// MkdirTemp makes it 0700; nginx's workers, which run as nobody
		// when the tests run as root, must be able to reach into it.
		if s.err = os.Chmod(s.dir, 0o755); s.err != nil {
			return
		}
		var l *Lab
		if l, s.err = NewTest(s.dir, s.Env...); s.err != nil {
			return
		}
		parts := s.Parts
		if len(parts) == 0 {
			parts = Parts()
		}
		if s.err = l.Start(context.Background(), parts); s.err == nil {
			s.lab = l
		}
	})
	if s.err != nil {
		tb.Fatalf("start the lab: %v (state in %s)", s.err, s.dir)
	}
	return s.lab
}

// Close stops the lab if it was started and passes code through. The state
// folder is removed after a pass and kept, with its logs, after a failure.
func (s *Shared) Close(code int) int {
	if s.lab != nil {
		s.lab.Stop()
	}
	if s.dir != "" {
		if code != 0 {
			fmt.Fprintf(os.Stderr, "lab state and logs kept in %s\n", s.dir)
		} else {
			os.RemoveAll(s.dir)
		}
	}
	return code
}
