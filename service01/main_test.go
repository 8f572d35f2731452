package main

import (
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
func mustRabbit(tb testing.TB) *testRabbit {
	tb.Helper()
	rabbitOnce.Do(func() { rabbit, rabbitErr = startTestRabbit() })
	if rabbitErr != nil {
		tb.Fatalf("start RabbitMQ: %v", rabbitErr)
	}
	return rabbit
}
