package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// partOrder is the order the parts start in; they stop in reverse.
var partOrder = []string{"rabbitmq", "service01", "service02", "nginx"}

// Lab is a native run of the whole lab, or of a subset of its parts.
type Lab struct {
	cfg        Config
	root       string    // the repository
	state      string    // the runner's folder: data, logs, binaries, rendered config
	env        []string  // the environment the services get
	echo       io.Writer // where the services' and nginx's output is echoed; nil for none
	buildFlags []string  // extra go build flags (the tests add -race)

	broker   *broker
	services map[string]*service
	gateway  *nginx
	started  []string // the parts started, in order

	restartMu sync.Mutex // Wait's restarts of a cluster's nodes
}

// Options are the choices a Lab is made with beyond Config.
type Options struct {
	Root       string    // the repository
	State      string    // the runner's folder: data, logs, binaries, rendered config
	Env        []string  // the environment the services get (KEY=value)
	Echo       io.Writer // where the services' and nginx's output is echoed; nil for none
	BuildFlags []string  // extra go build flags (the tests add -race)
	// The Erlang ports of the broker; zero picks RabbitMQ's convention
	// (distribution on the AMQP port + 20000) and the AMQP port + 21000 for
	// the node's own epmd, so a second lab on other ports never collides.
	// Both stay below 32768, where Linux's ephemeral ports begin: a port
	// up there may be the local end of any outgoing connection.
	DistPort, EpmdPort int
}

// New makes a lab; nothing starts before Start.
func New(cfg Config, o Options) *Lab {
	if o.DistPort == 0 {
		o.DistPort = cfg.RabbitMQPort + 20000
	}
	if o.EpmdPort == 0 {
		o.EpmdPort = cfg.RabbitMQPort + 21000
	}
	l := &Lab{cfg: cfg, root: o.Root, state: o.State, env: o.Env, echo: o.Echo, buildFlags: o.BuildFlags}
	l.broker = newBroker(cfg, o.State, filepath.Join(o.Root, "rabbitmq"), o.DistPort, o.EpmdPort)
	l.services = map[string]*service{
		"service01": l.newService("service01", cfg.Service01Port),
		"service02": l.newService("service02", cfg.Service02Port),
	}
	l.gateway = &nginx{
		dir:      filepath.Join(o.State, "nginx-"+strconv.Itoa(cfg.GatewayPort)),
		template: filepath.Join(o.Root, "nginx", "templates", "gateway.conf.template"),
		vars:     gatewayVars(cfg, l.DefaultGatewayAccessLog()),
	}
	return l
}

func (l *Lab) newService(name string, port int) *service {
	env := append(slices.Clone(l.env),
		// Natively the services listen on the loopback only; nginx is the
		// way in, as in compose.
		"LISTEN_HOST=127.0.0.1",
		strings.ToUpper(name)+"_PORT="+strconv.Itoa(port),
	)
	// The working directory is the state folder, not the repository: the
	// runner has already applied .env to the environment it passes on.
	return &service{name: name, bin: binPath(l.state, name), dir: l.state, env: env, port: port, readyLimit: serviceReadyLimit}
}

func (l *Lab) logPath(part string) string {
	return filepath.Join(l.state, "logs", part+".log")
}

// Parts are the lab's parts, in the order they start.
func Parts() []string { return slices.Clone(partOrder) }

// ParseParts checks the names of the parts to start and puts them in start
// order; none means all.
func ParseParts(args []string) ([]string, error) {
	if len(args) == 0 {
		return partOrder, nil
	}
	var parts []string
	for _, name := range partOrder {
		if slices.Contains(args, name) {
			parts = append(parts, name)
		}
	}
	for _, a := range args {
		if !slices.Contains(partOrder, a) {
			return nil, fmt.Errorf("unknown part %q: the parts are %s", a, strings.Join(partOrder, ", "))
		}
	}
	return parts, nil
}

// Start starts the parts in order, each ready before the next. If one fails,
// the ones already started are stopped and the error says which failed.
func (l *Lab) Start(ctx context.Context, parts []string) (err error) {
	defer func() {
		if err != nil {
			l.Stop()
		}
	}()
	if err := os.MkdirAll(filepath.Join(l.state, "logs"), 0o755); err != nil {
		return err
	}
	pruneRecords(l.state)
	if err := l.checkPorts(parts); err != nil {
		return err
	}
	if slices.Contains(parts, "rabbitmq") {
		// The services find the lab's broker on the loopback, where it
		// listens: its one node, or every node of its cluster.
		addresses := ""
		if len(l.broker.nodes) > 1 {
			addresses = l.broker.addresses()
		}
		for _, s := range l.services {
			s.env = append(s.env, "RABBITMQ_HOST=127.0.0.1", "RABBITMQ_PORT="+strconv.Itoa(l.cfg.RabbitMQPort), "RABBITMQ_ADDRESSES="+addresses)
		}
	}
	var toBuild []string
	for _, p := range parts {
		if l.services[p] != nil {
			toBuild = append(toBuild, p)
		}
	}
	if err := buildServices(ctx, l.root, filepath.Join(l.state, "bin"), l.buildFlags, toBuild...); err != nil {
		return err
	}
	for _, p := range parts {
		if err := l.startPart(ctx, p); err != nil {
			return err
		}
		l.started = append(l.started, p)
		if err := l.writeRecord(); err != nil {
			return fmt.Errorf("record what runs (for lab stop): %w", err)
		}
	}
	return nil
}

func (l *Lab) startPart(ctx context.Context, part string) error {
	switch part {
	case "rabbitmq":
		return l.broker.start(ctx)
	case "nginx":
		if err := l.gateway.start(l.logPath("nginx"), l.echo); err != nil {
			return err
		}
		err := waitHTTP(ctx, "nginx", l.GatewayURL()+"/healthz", l.gateway.proc, gatewayReadyLimit)
		if err != nil {
			l.gateway.stop()
		}
		return err
	default:
		s := l.services[part]
		if err := s.start(l.logPath(part), l.echo); err != nil {
			return err
		}
		err := waitHTTP(ctx, part, fmt.Sprintf("http://127.0.0.1:%d/readyz", s.port), s.proc, s.readyLimit)
		if err != nil {
			s.stop()
			if !slices.Contains(l.started, "rabbitmq") {
				err = fmt.Errorf("%w\n(the lab's broker is not among the parts started: start it too, e.g. make run PARTS='rabbitmq %s')", err, part)
			}
		}
		return err
	}
}

// checkPorts makes sure every port the parts will listen on is free, so a
// clash is reported before anything starts, naming the variable to change.
func (l *Lab) checkPorts(parts []string) error {
	want := map[string][]namedPort{
		"service01": {{"SERVICE01_PORT", l.cfg.Service01Port}},
		"service02": {{"SERVICE02_PORT", l.cfg.Service02Port}},
		"nginx":     {{"GATEWAY_PORT", l.cfg.GatewayPort}},
	}
	for i, n := range l.broker.nodes {
		plus := ""
		if i > 0 {
			plus = " + " + strconv.Itoa(i) // a cluster's nodes are on the ports after the first's
		}
		want["rabbitmq"] = append(want["rabbitmq"],
			namedPort{"RABBITMQ_PORT" + plus, n.amqpPort},
			namedPort{"RABBITMQ_MANAGEMENT_PORT" + plus, n.mgmtPort},
			namedPort{"RABBITMQ_PORT + " + strconv.Itoa(20000+i) + " (Erlang distribution)", n.distPort})
	}
	if !l.broker.epmd.running() {
		// After a crash of a node its epmd still runs, and serves the
		// node started again. Otherwise an epmd on the port is a daemon
		// that rabbitmqctl (lab ctl) started while the node was down:
		// stopped first, so that the runner's own can take the port.
		if slices.Contains(parts, "rabbitmq") && holderOf(l.state, l.broker.epmd.port) == "" {
			l.broker.epmd.stopDaemon()
		}
		want["rabbitmq"] = append(want["rabbitmq"], namedPort{"RABBITMQ_PORT + 21000 (the broker's epmd)", l.broker.epmd.port})
	}
	var problems []string
	for _, part := range parts {
		for _, p := range want[part] {
			ln, err := net.Listen("tcp", ":"+strconv.Itoa(p.port))
			if err != nil {
				if holder := holderOf(l.state, p.port); holder != "" {
					problems = append(problems, fmt.Sprintf("port %d (%s) is held by this checkout's own lab (%s), still running from an earlier run: stop it with make stop (or go run ./lab stop), or with Ctrl-C in its terminal, then start again",
						p.port, p.name, holder))
					continue
				}
				// The broker's Erlang ports follow RABBITMQ_PORT.
				variable, suggest := p.name, p.port+1000
				if v, _, derived := strings.Cut(p.name, " + "); derived {
					variable, suggest = v, l.cfg.RabbitMQPort+10
					if v == "RABBITMQ_MANAGEMENT_PORT" {
						suggest = l.cfg.ManagementPort + 10
					}
				}
				problems = append(problems, fmt.Sprintf("port %d (%s) is already in use: stop what listens there (ss -ltnp 'sport = :%d' shows it) or choose another port, e.g. %s=%d make run",
					p.port, p.name, p.port, variable, suggest))
				continue
			}
			ln.Close()
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n"))
	}
	return nil
}

// Stop stops what was started, in reverse order.
func (l *Lab) Stop() {
	l.Heal()
	for i := len(l.started) - 1; i >= 0; i-- {
		switch p := l.started[i]; p {
		case "rabbitmq":
			l.broker.stop()
		case "nginx":
			l.gateway.stop()
		default:
			l.services[p].stop()
		}
	}
	l.started = nil
	l.writeRecord() // removes it: nothing runs
}

// Wait returns nil when ctx is done, or an error as soon as a part exits
// by itself. A cluster's node that exits is no such error: the cluster goes
// on without it, and Wait starts it again after nodeRestartDelay, as a
// supervisor (systemd's Restart=, a container's restart policy) would.
func (l *Lab) Wait(ctx context.Context) error {
	exited := make(chan string, len(l.started))
	var supervisors sync.WaitGroup
	defer supervisors.Wait()
	for _, p := range l.started {
		if p == "rabbitmq" && len(l.broker.nodes) > 1 {
			for _, n := range l.broker.nodes {
				supervisors.Go(func() { l.superviseNode(ctx, n) })
			}
			continue
		}
		proc := l.proc(p)
		go func() {
			select {
			case <-proc.done:
				exited <- p
			case <-ctx.Done():
			}
		}()
	}
	select {
	case <-ctx.Done():
		return nil
	case p := <-exited:
		proc := l.proc(p)
		return fmt.Errorf("%s exited unexpectedly (%v); its log %s ends with:\n%s", p, proc.exitStatus(), proc.log, proc.tail(10))
	}
}

// nodeRestartDelay is how long a cluster's node that exited stays down
// before Wait starts it again: time to watch the cluster go on without it.
const nodeRestartDelay = 20 * time.Second

// superviseNode starts a cluster's node again each time it exits, until
// ctx is done.
func (l *Lab) superviseNode(ctx context.Context, n *rabbitmq) {
	out := l.echo
	if out == nil {
		out = io.Discard
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.proc.done:
		}
		fmt.Fprintf(out, "%s: node %s exited (%v); the cluster goes on without it, and the runner starts it again in %s\n",
			n.part, n.nodeName(), n.proc.exitStatus(), nodeRestartDelay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(nodeRestartDelay):
		}
		l.restartMu.Lock() // one restart at a time: each rewrites the record
		err := l.StartNode(ctx, n.nodeName())
		l.restartMu.Unlock()
		if err != nil {
			if ctx.Err() == nil {
				fmt.Fprintf(out, "%s: could not start node %s again: %v\n", n.part, n.nodeName(), err)
			}
			return
		}
		fmt.Fprintf(out, "%s: node %s is back in the cluster\n", n.part, n.nodeName())
	}
}

func (l *Lab) proc(part string) *process {
	switch part {
	case "rabbitmq":
		return l.broker.nodes[0].proc
	case "nginx":
		return l.gateway.proc
	default:
		return l.services[part].proc
	}
}
