// Package e2e tests the whole lab through its gateway: a real RabbitMQ, both
// services built with the race detector, and nginx, on free ports.
package e2e

import (
	"os"
	"testing"

	"pingpong/lab/runner"
)

// lab is the one lab the package's tests share.
var lab runner.Shared

func TestMain(m *testing.M) { os.Exit(lab.Close(m.Run())) }
