package main

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
)

// A client of a cluster is given every node: dial connects to the first
// that answers, and the next dial starts with the node after it.
func TestDialTriesEveryNode(t *testing.T) {
	t.Parallel()
	r := mustRabbit(t)
	closed, err := freePorts(2) // nothing listens on them
	if err != nil {
		t.Fatal(err)
	}
	down1 := net.JoinHostPort("127.0.0.1", strconv.Itoa(closed[0]))
	down2 := net.JoinHostPort("127.0.0.1", strconv.Itoa(closed[1]))
	up := net.JoinHostPort("127.0.0.1", strconv.Itoa(r.amqpPort))
	cfg, err := parseConfig(getenvFrom(map[string]string{"RABBITMQ_ADDRESSES": down1 + "," + up + "," + down2}))
	if err != nil {
		t.Fatal(err)
	}
	d := dialer{cfg: cfg.RabbitMQConfig}
	for i := range 2 {
		conn, addr, err := d.dial(context.Background())
		if err != nil {
			t.Fatalf("dial %d: %v", i+1, err)
		}
		conn.Close()
		if addr != up {
			t.Errorf("dial %d connected to %s, want the node that is up, %s", i+1, addr, up)
		}
		if d.next != 2 {
			t.Errorf("after dial %d the next dial starts with node %d, want the one after %s (2)", i+1, d.next, up)
		}
	}

	// No node up: the error names every node and why it failed.
	d = dialer{cfg: cfg.RabbitMQConfig}
	d.cfg.RabbitMQAddresses = []string{down1, down2}
	_, _, err = d.dial(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "no node answered: "+down1+": ") || !strings.Contains(err.Error(), "; "+down2+": ") {
		t.Errorf("dial with every node down: error %v, want one naming %s and %s", err, down1, down2)
	}
}
