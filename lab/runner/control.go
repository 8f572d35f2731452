package runner

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"
)

// Config is the configuration the lab runs with.
func (l *Lab) Config() Config { return l.cfg }

// State is the runner's folder: data, logs, binaries, rendered config.
func (l *Lab) State() string { return l.state }

// GatewayURL is the base URL of the gateway: GATEWAY_ADDRESS, or the
// loopback when that is 0.0.0.0 (every address).
func (l *Lab) GatewayURL() string {
	return "http://" + net.JoinHostPort(l.gatewayHost(), strconv.Itoa(l.cfg.GatewayPort))
}

// gatewayHost is the address a client on this machine reaches the gateway on.
func (l *Lab) gatewayHost() string {
	if ip := net.ParseIP(l.cfg.GatewayAddress); ip == nil || ip.IsUnspecified() {
		return "127.0.0.1"
	}
	return l.cfg.GatewayAddress
}

// ManagementURL is the base URL of RabbitMQ's management UI and HTTP API:
// the first node's, or in a cluster the first running node's (each node's
// shows the whole cluster).
func (l *Lab) ManagementURL() string {
	return "http://127.0.0.1:" + strconv.Itoa(l.broker.firstRunning().mgmtPort)
}

// ServiceURL is the base URL of service01 or service02.
func (l *Lab) ServiceURL(name string) string {
	return "http://127.0.0.1:" + strconv.Itoa(l.services[name].port)
}

// AMQPURL is the broker's AMQP URL with the lab's login: the first node's,
// or in a cluster the first running node's.
func (l *Lab) AMQPURL() string { return l.broker.firstRunning().url() }

// LogPath is the file a part's output goes to (RabbitMQ's is in its data folder).
func (l *Lab) LogPath(part string) string {
	if part == "rabbitmq" {
		return l.broker.nodes[0].logFile()
	}
	return l.logPath(part)
}

// Ctl runs rabbitmqctl against the lab's broker and returns what it
// printed: against its node, or in a cluster its first running node.
func (l *Lab) Ctl(ctx context.Context, args ...string) (string, error) {
	return l.broker.firstRunning().ctl(ctx, args...)
}

// StopPart stops one part gracefully (nginx with SIGQUIT, the others with
// SIGTERM) and waits until it is gone. Stop still stops it again harmlessly.
func (l *Lab) StopPart(part string) error {
	switch part {
	case "rabbitmq":
		l.broker.stop()
	case "nginx":
		l.gateway.stop()
	case "service01", "service02":
		l.services[part].stop()
	default:
		return fmt.Errorf("unknown part %q", part)
	}
	return l.writeRecord()
}

// KillPart kills one part at once with SIGKILL, as a crash or a power cut
// would, and waits until it is gone.
func (l *Lab) KillPart(part string) error {
	switch part {
	case "rabbitmq":
		l.broker.kill()
	case "nginx":
		l.gateway.proc.kill()
	case "service01", "service02":
		l.services[part].kill()
	default:
		return fmt.Errorf("unknown part %q", part)
	}
	return l.writeRecord()
}

// StartPart starts a stopped or killed part again, on the same ports and
// data, and waits until it is ready.
func (l *Lab) StartPart(ctx context.Context, part string) error {
	if part != "rabbitmq" && part != "nginx" && l.services[part] == nil {
		return fmt.Errorf("unknown part %q", part)
	}
	if err := l.startPart(ctx, part); err != nil {
		return err
	}
	return l.writeRecord()
}

// StartPartWith starts a stopped gateway or service again with env on top
// of the lab's environment, as `GATEWAY_RATE_LIMIT=100r/s make run
// PARTS=nginx` does in the terminal that ran it. The ports stay: a part on
// other ports is a second lab. The part keeps env until it is started with
// other values.
func (l *Lab) StartPartWith(ctx context.Context, part string, env []string) error {
	cfg, err := LoadConfig(append(slices.Clone(l.env), env...))
	if err != nil {
		return err
	}
	if !slices.Equal(cfg.ports(), l.cfg.ports()) {
		return fmt.Errorf("%s: a part cannot move to other ports in a running lab; start a second lab with its own ports", part)
	}
	switch part {
	case "nginx":
		l.gateway.vars = gatewayVars(cfg, l.gateway.vars["GATEWAY_ACCESS_LOG"])
	case "service01", "service02":
		// The last value of a variable is the one a process sees.
		l.services[part].env = append(l.services[part].env, env...)
	default:
		return fmt.Errorf("%s: only the gateway and the services take other variables while the lab runs", part)
	}
	return l.StartPart(ctx, part)
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

// Nodes are the names of the broker's nodes: one, or a cluster's three.
func (l *Lab) Nodes() []string {
	var names []string
	for _, n := range l.broker.nodes {
		names = append(names, n.nodeName())
	}
	return names
}

// KillNode kills one of the broker's nodes at once, as a crash would, and
// waits until it is gone; in a cluster the others go on.
func (l *Lab) KillNode(name string) error {
	n, err := l.broker.node(name)
	if err != nil {
		return err
	}
	n.kill()
	return l.writeRecord()
}

// StopNode stops one of the broker's nodes gracefully.
func (l *Lab) StopNode(name string) error {
	n, err := l.broker.node(name)
	if err != nil {
		return err
	}
	n.stop()
	return l.writeRecord()
}

// StartNode starts a stopped or killed node again, on its ports and data,
// and waits until it is ready and, in a cluster, back in it.
func (l *Lab) StartNode(ctx context.Context, name string) error {
	n, err := l.broker.node(name)
	if err != nil {
		return err
	}
	if err := l.broker.startNodes(ctx, []*rabbitmq{n}); err != nil {
		return err
	}
	// Recorded at once, so that lab kill finds the node while it joins.
	if err := l.writeRecord(); err != nil {
		return err
	}
	if len(l.broker.nodes) > 1 {
		if err := l.broker.waitClustered(ctx, brokerReadyLimit); err != nil {
			return err
		}
	}
	return l.writeRecord()
}

// CtlOn runs rabbitmqctl against one node of the broker.
func (l *Lab) CtlOn(ctx context.Context, node string, args ...string) (string, error) {
	n, err := l.broker.node(node)
	if err != nil {
		return "", err
	}
	return n.ctl(ctx, args...)
}

// WaitClustered waits until every node of a cluster whose process runs
// runs in it.
func (l *Lab) WaitClustered(ctx context.Context) error {
	if len(l.broker.nodes) < 2 {
		return nil
	}
	return l.broker.waitClustered(ctx, brokerReadyLimit)
}
