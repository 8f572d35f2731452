package runner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// broker is the lab's RabbitMQ: one node, or a cluster of three
// (RABBITMQ_NODES=3) on consecutive ports, which form one cluster when they
// first start (peer discovery from each node's configuration file) and
// share one port mapper and one Erlang cookie.
type broker struct {
	nodes []*rabbitmq
	epmd  *epmd
	home  string // a cluster's HOME, with the cookie its nodes share

	partitioned bool // a node is cut off from the others (partition.go)
}

// newBroker lays out the nodes. A lone node keeps the folder and node name
// it has always had; a cluster's nodes live in a folder of their own, so
// that switching between one node and three never starts a node on data
// that expects the other.
func newBroker(cfg Config, state, confDir string, distPort, epmdPort int) *broker {
	e := &epmd{port: epmdPort}
	b := &broker{epmd: e}
	base := filepath.Join(state, "rabbitmq-"+strconv.Itoa(cfg.RabbitMQPort))
	if cfg.Nodes > 1 {
		b.home = base + "-cluster"
		e.log = filepath.Join(b.home, "epmd.log")
	} else {
		e.log = filepath.Join(base, "epmd.log")
	}
	var peers []string
	if cfg.Nodes > 1 {
		for i := range cfg.Nodes {
			peers = append(peers, nodeName(cfg.RabbitMQPort+i))
		}
	}
	for i := range cfg.Nodes {
		n := &rabbitmq{
			part:     "rabbitmq",
			dir:      base,
			home:     base,
			confDir:  confDir,
			amqpPort: cfg.RabbitMQPort + i,
			mgmtPort: cfg.ManagementPort + i,
			distPort: distPort + i,
			peers:    peers,
			epmd:     e,
			user:     cfg.RabbitMQUser,
			pass:     cfg.RabbitMQPass,
		}
		if cfg.Nodes > 1 {
			n.part = "rabbitmq-" + strconv.Itoa(i+1)
			n.srcIP = "127.0.0." + strconv.Itoa(i+2)
			n.dir = filepath.Join(b.home, strconv.Itoa(n.amqpPort))
			n.home = b.home
		}
		b.nodes = append(b.nodes, n)
	}
	return b
}

// start starts the port mapper and the nodes and waits until every node is
// ready and, for a cluster, until all three run as one cluster.
func (b *broker) start(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			b.stop()
		}
	}()
	if err := b.writeCookie(); err != nil {
		return err
	}
	if err := b.epmd.start(); err != nil {
		return err
	}
	first, rest := b.nodes[:0], b.nodes
	if _, err := os.Stat(filepath.Join(b.nodes[0].dir, "mnesia")); err != nil && len(b.nodes) > 1 {
		// A new cluster: the first node starts alone, then the others
		// find it running and join it. Started together, nodes on empty
		// folders may each find no other and form clusters of one.
		// Nodes with data start together: each waits for the others it
		// knows, whichever stopped last.
		first, rest = b.nodes[:1], b.nodes[1:]
	}
	for _, group := range [][]*rabbitmq{first, rest} {
		if err := b.startNodes(ctx, group); err != nil {
			return err
		}
	}
	if len(b.nodes) > 1 {
		return b.waitClustered(ctx, brokerReadyLimit)
	}
	return nil
}

// startNodes starts nodes together, but those already running, and waits
// until each is ready.
func (b *broker) startNodes(ctx context.Context, nodes []*rabbitmq) error {
	for _, n := range nodes {
		if n.running() {
			continue
		}
		if err := n.start(); err != nil {
			return err
		}
	}
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() { errs[i] = n.waitReady(ctx, brokerReadyLimit) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// writeCookie gives a new cluster the Erlang cookie its nodes and
// rabbitmqctl share: nodes and tools with different cookies cannot talk.
// A lone node makes its own.
func (b *broker) writeCookie() error {
	if b.home == "" {
		return nil
	}
	path := filepath.Join(b.home, ".erlang.cookie")
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	var c [20]byte
	if _, err := rand.Read(c[:]); err != nil {
		return err
	}
	if err := os.MkdirAll(b.home, 0o755); err != nil {
		return fmt.Errorf("rabbitmq: %w", err)
	}
	return os.WriteFile(path, []byte(strings.ToUpper(hex.EncodeToString(c[:]))), 0o400)
}

// waitClustered waits until a running node sees every node of the
// cluster whose process runs running in the cluster.
func (b *broker) waitClustered(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var want, running []string
	var err error
	for {
		// The nodes whose process runs: a node that is down, or waits
		// for its turn to start again (Lab.Wait), is not waited for.
		want = want[:0]
		for _, n := range b.nodes {
			if n.running() {
				want = append(want, n.nodeName())
			}
		}
		running, err = b.runningNodes(ctx)
		if err == nil && slices.Equal(running, want) {
			return nil
		}
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	if err != nil {
		return fmt.Errorf("the cluster did not form within %s: %v; see the nodes' logs in %s", limit, err, b.home)
	}
	return fmt.Errorf("the cluster did not form within %s: it runs %s, want %s; see the nodes' logs in %s, or start afresh with make clean",
		limit, strings.Join(running, ", "), strings.Join(want, ", "), b.home)
}

// runningNodes are the names of the cluster's nodes that run, as the
// first running node's management API sees them, sorted.
func (b *broker) runningNodes(ctx context.Context) ([]string, error) {
	n := b.firstRunning()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/api/nodes", n.mgmtPort), nil)
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(n.user, n.pass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /api/nodes answered %s", resp.Status)
	}
	var nodes []struct {
		Name    string `json:"name"`
		Running bool   `json:"running"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&nodes); err != nil {
		return nil, fmt.Errorf("GET /api/nodes: %w", err)
	}
	var running []string
	for _, node := range nodes {
		if node.Running {
			running = append(running, node.Name)
		}
	}
	slices.Sort(running)
	return running, nil
}

// firstRunning is the first node whose VM runs, or the first node when none does.
func (b *broker) firstRunning() *rabbitmq {
	for _, n := range b.nodes {
		if n.running() {
			return n
		}
	}
	return b.nodes[0]
}

// stop stops every node gracefully, together, then the port mapper.
func (b *broker) stop() {
	var wg sync.WaitGroup
	for _, n := range b.nodes {
		wg.Go(n.stop)
	}
	wg.Wait()
	b.epmd.stop()
}

// kill kills every node at once, as a power cut would; the port mapper stays.
func (b *broker) kill() {
	for _, n := range b.nodes {
		n.kill()
	}
}

// addresses are the nodes' AMQP host:port, separated by commas, as the
// services' RABBITMQ_ADDRESSES wants them.
func (b *broker) addresses() string {
	var addrs []string
	for _, n := range b.nodes {
		addrs = append(addrs, "127.0.0.1:"+strconv.Itoa(n.amqpPort))
	}
	return strings.Join(addrs, ",")
}

// node finds a node by its node name.
func (b *broker) node(name string) (*rabbitmq, error) {
	for _, n := range b.nodes {
		if n.nodeName() == name {
			return n, nil
		}
	}
	var names []string
	for _, n := range b.nodes {
		names = append(names, n.nodeName())
	}
	return nil, fmt.Errorf("no node %q: the lab's nodes are %s", name, strings.Join(names, ", "))
}
