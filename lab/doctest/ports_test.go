package doctest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"

	"pingpong/lab/runner"
)

// A chapter starts parts of its lab long after choosing the ports, and
// ports the kernel hands out for :0 come from the range it also uses for
// outgoing connections, so one may be taken by then (curl, the services'
// connections to the broker, other test packages). The chapters' ports come
// from below that range instead, and none is handed out twice.
const (
	portsFrom = 20000
	portsTo   = 32000 // Linux starts its ephemeral ports at 32768
)

var (
	portsMu   sync.Mutex
	portsUsed = map[int]bool{}
)

// pickPorts returns n distinct ports, free now, below the ephemeral range.
func pickPorts(n int) ([]int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			return nil, fmt.Errorf("no free port between %d and %d", portsFrom, portsTo)
		}
		p := portsFrom + rand.IntN(portsTo-portsFrom)
		if portsUsed[p] {
			continue
		}
		l, err := net.Listen("tcp", ":"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		l.Close()
		portsUsed[p] = true
		ports = append(ports, p)
	}
	return ports, nil
}

// newTestLab is runner.NewTest with ports from pickPorts and the reader's
// defaults (readerEnv), then extraEnv.
func newTestLab(dir string, extraEnv ...string) (*runner.Lab, error) {
	ports, err := pickPorts(7)
	if err != nil {
		return nil, err
	}
	environ := append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"GATEWAY_PORT=" + strconv.Itoa(ports[0]),
		"SERVICE01_PORT=" + strconv.Itoa(ports[1]),
		"SERVICE02_PORT=" + strconv.Itoa(ports[2]),
		"RABBITMQ_PORT=" + strconv.Itoa(ports[3]),
		"RABBITMQ_MANAGEMENT_PORT=" + strconv.Itoa(ports[4]),
		"RABBITMQ_DEFAULT_USER=lab",
		"RABBITMQ_DEFAULT_PASS=lab",
	}, slices.Concat(readerEnv, extraEnv)...)
	cfg, err := runner.LoadConfig(environ)
	if err != nil {
		return nil, err
	}
	root, err := runner.RepoRoot()
	if err != nil {
		return nil, err
	}
	return runner.New(cfg, runner.Options{
		Root:       root,
		State:      dir,
		Env:        environ,
		BuildFlags: []string{"-race"},
		DistPort:   ports[5],
		EpmdPort:   ports[6],
	}), nil
}
