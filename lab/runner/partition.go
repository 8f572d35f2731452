package runner

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// A partition cuts a cluster in two, as a failed network between machines
// would: here one node is cut off from the other two. On one machine every
// node is on the loopback, so the cut is a few iptables rules that drop the
// Erlang distribution traffic between the one node and the others, told
// apart by their ports (each node's distribution listens on a port of its
// own) and their addresses (each node connects to the others from an
// address of its own, rabbitmq.go). rabbitmqctl and the clients, which
// connect from 127.0.0.1, still reach every node. It needs root.

// chain is the iptables chain of the lab's cut, named after its first port
// so that labs on other ports keep theirs apart.
func (b *broker) chain() string { return "pingpong-" + strconv.Itoa(b.nodes[0].amqpPort) }

// Partition cuts the traffic between node and the cluster's other nodes.
// The nodes notice within about net_ticktime (netTickTime).
func (l *Lab) Partition(node string) error {
	cut, err := l.broker.node(node)
	if err != nil {
		return err
	}
	if len(l.broker.nodes) < 2 {
		return errors.New("a partition needs a cluster: start the lab with RABBITMQ_NODES=3")
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		return errors.New("a partition needs iptables: run make deps (or apt-get install iptables)")
	}
	chain := l.broker.chain()
	if err := iptables("-N", chain); err != nil {
		return err
	}
	l.broker.partitioned = true
	var rules [][]string
	for _, other := range l.broker.nodes {
		if other == cut {
			continue
		}
		for _, dir := range []struct{ from, to *rabbitmq }{{cut, other}, {other, cut}} {
			port := strconv.Itoa(dir.to.distPort)
			// The connection's packets one way, then the other.
			rules = append(rules,
				[]string{"-s", dir.from.srcIP, "-p", "tcp", "--dport", port},
				[]string{"-d", dir.from.srcIP, "-p", "tcp", "--sport", port})
		}
	}
	for _, r := range rules {
		if err := iptables(append([]string{"-A", chain}, append(r, "-j", "DROP")...)...); err != nil {
			l.Heal()
			return err
		}
	}
	if err := iptables("-I", "INPUT", "-i", "lo", "-j", chain); err != nil {
		l.Heal()
		return err
	}
	return nil
}

// Heal removes the cut, if there is one.
func (l *Lab) Heal() error {
	if !l.broker.partitioned {
		return nil
	}
	chain := l.broker.chain()
	// The jump may be missing if Partition failed half way.
	iptables("-D", "INPUT", "-i", "lo", "-j", chain)
	err := errors.Join(iptables("-F", chain), iptables("-X", chain))
	if err == nil {
		l.broker.partitioned = false
	}
	return err
}

func iptables(args ...string) error {
	out, err := exec.CommandContext(context.Background(), "iptables", append([]string{"-w"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
