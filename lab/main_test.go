package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

// The end-to-end tests share one lab (broker, both services built with the
// race detector, nginx), started on free ports by the first test that needs
// it and stopped after the last one.
var (
	labOnce sync.Once
	testLab *Lab
	labErr  error
	labDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if testLab != nil {
		testLab.Stop()
		if code != 0 {
			fmt.Fprintf(os.Stderr, "lab state and logs kept in %s\n", labDir)
		} else {
			os.RemoveAll(labDir)
		}
	}
	os.Exit(code)
}

// mustLab returns the package's running lab, starting it on first use.
func mustLab(tb testing.TB) *Lab {
	tb.Helper()
	labOnce.Do(func() {
		labDir, labErr = os.MkdirTemp("", "lab-e2e-")
		if labErr != nil {
			return
		}
		var l *Lab
		l, labErr = newTestLab(labDir)
		if labErr != nil {
			return
		}
		labErr = l.Start(context.Background(), partOrder)
		if labErr == nil {
			testLab = l
		}
	})
	if labErr != nil {
		tb.Fatalf("start the lab: %v (state in %s)", labErr, labDir)
	}
	return testLab
}

// newTestLab makes a lab on free ports with its state in dir. Its services
// get only the environment below, so a developer's .env or shell cannot
// change what the tests see.
func newTestLab(dir string, extraEnv ...string) (*Lab, error) {
	ports, err := freePorts(8)
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
		"LOG_LEVEL=debug",
		// The tests send thousands of requests from one address.
		"GATEWAY_RATE_LIMIT=100000r/s",
		"GATEWAY_RATE_BURST=100000",
	}, extraEnv...)
	cfg, err := loadConfig(environ)
	if err != nil {
		return nil, err
	}
	root, err := filepath.Abs("..")
	if err != nil {
		return nil, err
	}
	return newLab(cfg, labOptions{
		root:       root,
		state:      dir,
		env:        environ,
		buildFlags: []string{"-race"},
		distPort:   ports[5],
		epmdPort:   ports[6],
	}), nil
}

// freePorts asks the kernel for n distinct free TCP ports.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", ":0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
