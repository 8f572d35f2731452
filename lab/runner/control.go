package runner

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// Config is the configuration the lab runs with.
func (l *Lab) Config() Config { return l.cfg }

// State is the runner's folder: data, logs, binaries, rendered config.
func (l *Lab) State() string { return l.state }

// GatewayURL is the base URL of the gateway, on the IPv4 loopback where
// nginx listens.
func (l *Lab) GatewayURL() string { return "http://127.0.0.1:" + strconv.Itoa(l.cfg.GatewayPort) }

// ManagementURL is the base URL of RabbitMQ's management UI and HTTP API.
func (l *Lab) ManagementURL() string {
	return "http://127.0.0.1:" + strconv.Itoa(l.cfg.ManagementPort)
}

// ServiceURL is the base URL of service01 or service02.
func (l *Lab) ServiceURL(name string) string {
	return "http://127.0.0.1:" + strconv.Itoa(l.services[name].port)
}

// AMQPURL is the broker's AMQP URL with the lab's login.
func (l *Lab) AMQPURL() string { return l.rabbit.url() }

// LogPath is the file a part's output goes to (RabbitMQ's is in its data folder).
func (l *Lab) LogPath(part string) string {
	if part == "rabbitmq" {
		return l.rabbit.logFile()
	}
	return l.logPath(part)
}

// Ctl runs rabbitmqctl against the lab's broker and returns what it printed.
func (l *Lab) Ctl(ctx context.Context, args ...string) (string, error) {
	return l.rabbit.ctl(ctx, args...)
}

// StopPart stops one part gracefully (nginx with SIGQUIT, the others with
// SIGTERM) and waits until it is gone. Stop still stops it again harmlessly.
func (l *Lab) StopPart(part string) error {
	switch part {
	case "rabbitmq":
		l.rabbit.stop()
	case "nginx":
		l.gateway.stop()
	case "service01", "service02":
		l.services[part].stop()
	default:
		return fmt.Errorf("unknown part %q", part)
	}
	return nil
}

// KillPart kills one part at once with SIGKILL, as a crash or a power cut
// would, and waits until it is gone.
func (l *Lab) KillPart(part string) error {
	switch part {
	case "rabbitmq":
		l.rabbit.kill()
	case "nginx":
		l.gateway.proc.kill()
	case "service01", "service02":
		l.services[part].kill()
	default:
		return fmt.Errorf("unknown part %q", part)
	}
	return nil
}

// StartPart starts a stopped or killed part again, on the same ports and
// data, and waits until it is ready.
func (l *Lab) StartPart(ctx context.Context, part string) error {
	if part != "rabbitmq" && part != "nginx" && l.services[part] == nil {
		return fmt.Errorf("unknown part %q", part)
	}
	return l.startPart(ctx, part)
}

// ReloadGateway re-renders nginx's configuration and reloads it without
// dropping connections (nginx -s reload).
func (l *Lab) ReloadGateway() error { return l.gateway.reload() }

// readyLimit bounds how long StartPart and Start wait for each part.
const (
	brokerReadyLimit  = 90 * time.Second
	serviceReadyLimit = 45 * time.Second
	gatewayReadyLimit = 15 * time.Second
)
