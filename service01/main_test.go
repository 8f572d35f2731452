package main

import (
	"errors"
	"os"
	"sync"
	"testing"
)

// The package's integration tests share one RabbitMQ node, started by the
// first test that asks for it and stopped after the last test.
var (
	rabbitOnce sync.Once
	rabbit     *testRabbit
	rabbitErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if rabbit != nil {
		rabbit.Stop()
	}
	os.Exit(code)
}

// mustRabbit returns the package's RabbitMQ node, starting it on first use.
//
// go test -short skips the tests that need one: the unit tests alone take a
// few seconds. Without RabbitMQ installed, they are skipped too, with a line
// saying how to get it, so that go test in a service's folder works on a
// learner's machine; under CI or make test (CI or LAB_NEED_RABBITMQ set),
// a missing broker fails them instead.
func mustRabbit(tb testing.TB) *testRabbit {
	tb.Helper()
	if testing.Short() {
		tb.Skip("-short: this test needs a RabbitMQ node")
	}
	rabbitOnce.Do(func() { rabbit, rabbitErr = startTestRabbit() })
	if errors.Is(rabbitErr, errNoRabbitMQ) && os.Getenv("CI") == "" && os.Getenv("LAB_NEED_RABBITMQ") == "" {
		tb.Skipf("%v; to run this test, install it: make deps at the repository's root (or apt-get install rabbitmq-server)", rabbitErr)
	}
	if rabbitErr != nil {
		tb.Fatalf("start RabbitMQ: %v", rabbitErr)
	}
	return rabbit
}
