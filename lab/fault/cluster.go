package fault

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
)

// The cluster's scenarios run against a lab of three broker nodes
// (RABBITMQ_NODES=3), on which the pings queue, the dead-letter queue and
// the event log each have a replica on every node. The services are given
// every node and move to another when theirs goes down.

// ClusterEnv is the extra environment of the lab the cluster's scenarios
// run against: Env, on three nodes.
var ClusterEnv = append(append([]string{}, Env...), "RABBITMQ_NODES=3")

// leaderRecoveryLimit is the longest a cluster may take, after the node that
// leads the pings queue is killed, to accept pings again: the other two
// elect a new leader among themselves, and a service that was connected to
// the dead node connects to another.
const leaderRecoveryLimit = 10 * time.Second

// ClusterScenarios are the faults of a three-node cluster, in the order the
// suite runs them.
func ClusterScenarios() []Scenario {
	return []Scenario{
		{Name: "leader-kill", cluster: true, Title: "cluster: kill -9 the node leading the pings queue",
			inject: killLeader, check: checkLeaderKill},
		{Name: "partition", cluster: true, Title: "cluster: one node cut off from the others for 45 s",
			inject: partition, check: checkPartition},
		{Name: "rolling-restart", cluster: true, Title: "cluster: each node restarted in turn",
			inject: rollingRestart},
	}
}

// killLeader kills the node that leads the pings queue and returns at
// once: the load's first 202 after it is the time the cluster took to go on.
func killLeader(ctx context.Context, s *Suite, f *faultRun) error {
	leader, err := queueLeader(ctx, s, "")
	if err != nil {
		return err
	}
	s.logf("leader-kill: the pings queue's leader is %s", leader)
	f.killed = leader
	return s.Lab.KillNode(leader)
}

// checkLeaderKill wants the first 202 within leaderRecoveryLimit of the
// kill and a new leader, then starts the node again, which rejoins the
// cluster as a follower.
func checkLeaderKill(ctx context.Context, s *Suite, f *faultRun, _ []Ping, r *Result) {
	if r.Recovery > leaderRecoveryLimit {
		r.Problems = append(r.Problems, fmt.Sprintf("the first 202 came %s after the kill, want within %s",
			r.Recovery.Round(10*time.Millisecond), leaderRecoveryLimit))
	}
	if leader, err := queueLeader(ctx, s, f.killed); err != nil {
		r.Problems = append(r.Problems, fmt.Sprintf("no new leader after the kill: %v", err))
	} else {
		r.Notes = append(r.Notes, fmt.Sprintf("the leader was %s; %s took over", f.killed, leader))
	}
	// The broker may nack messages while the queues' leaders move:
	// service01 answers them 503 and replaces the channel (publisher.go).
	if n, err := metric(ctx, s.Lab.ServiceURL("service01"), `service01_publishes_total{result="nacked"}`); err == nil {
		r.Notes = append(r.Notes, fmt.Sprintf("service01 had %d messages nacked so far", n))
	}
	if err := s.Lab.StartNode(ctx, f.killed); err != nil {
		r.Problems = append(r.Problems, fmt.Sprintf("starting %s again: %v", f.killed, err))
	}
}

// rollingRestart stops each node gracefully and starts it again, one after
// the other, waiting each time until the node is back in the cluster: the
// way a cluster is upgraded without a stop.
func rollingRestart(ctx context.Context, s *Suite, _ *faultRun) error {
	for _, node := range s.Lab.Nodes() {
		s.logf("rolling-restart: restarting %s", node)
		if err := s.Lab.StopNode(node); err != nil {
			return err
		}
		if err := s.Lab.StartNode(ctx, node); err != nil {
			return err
		}
	}
	return nil
}

// queueLeader is the node that leads the pings queue, from rabbitmqctl on
// a running node, other than not. Right after its leader died, the queue
// has none for a moment: it waits up to 30 s for one.
func queueLeader(ctx context.Context, s *Suite, not string) (string, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := s.Lab.Ctl(ctx, "list_queues", "--quiet", "--no-table-headers", "name", "leader")
		if err == nil {
			for _, line := range strings.Split(out, "\n") {
				name, leader, ok := strings.Cut(strings.TrimSpace(line), "\t")
				if ok && name == queue && leader != not && slices.Contains(s.Lab.Nodes(), leader) {
					return leader, nil
				}
			}
			err = fmt.Errorf("rabbitmqctl list_queues shows no leader for %q among the lab's nodes but %s:\n%s", queue, not, out)
		}
		if time.Now().After(deadline) {
			return "", err
		}
		if err := waitCtx(ctx, 500*time.Millisecond); err != nil {
			return "", err
		}
	}
}

// partitionLength is how long the partition scenario keeps a node cut off:
// long enough for the nodes to notice (net_ticktime, 10 s in the lab) and
// the majority to go on without it. On RabbitMQ 4.3 that took up to 26 s
// when the cut node led the metadata store and the queues: each elects a
// new leader on the majority's side first.
const partitionLength = 45 * time.Second

// partition cuts off the node service01 is connected to from the other two
// for partitionLength, then heals the cut and waits until the cluster is
// whole again.
func partition(ctx context.Context, s *Suite, f *faultRun) error {
	node, err := connectionNode(ctx, s, "service01")
	if err != nil {
		return err
	}
	s.logf("partition: cutting off %s, where service01 is connected", node)
	f.killed = node
	if err := s.Lab.Partition(node); err != nil {
		return err
	}
	f.cutAt = time.Now()
	waitErr := waitCtx(ctx, partitionLength)
	f.healedAt = time.Now()
	s.logf("partition: healing")
	if err := s.Lab.Heal(); err != nil {
		return err
	}
	if waitErr != nil {
		return waitErr
	}
	return s.Lab.WaitClustered(ctx)
}

// checkPartition wants the majority to have gone on: pings sent after the
// cut and answered 202 before it healed. The first of them says how long
// the cluster took to go on without the node.
func checkPartition(_ context.Context, _ *Suite, f *faultRun, pings []Ping, r *Result) {
	if f.cutAt.IsZero() {
		return // no cut: the reason is among the problems already
	}
	during, first := 0, time.Duration(-1)
	for _, p := range pings {
		if p.Status == http.StatusAccepted && p.Sent.After(f.cutAt) && p.Answered.Before(f.healedAt) {
			during++
			if d := p.Answered.Sub(f.cutAt); first < 0 || d < first {
				first = d
			}
		}
	}
	if during == 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("no ping sent during the partition got a 202 before it healed: the majority did not go on without %s", f.killed))
		return
	}
	r.Notes = append(r.Notes, fmt.Sprintf("%s was cut off for %s; %d pings sent meanwhile got a 202 from the two other nodes, the first %s after the cut",
		f.killed, partitionLength, during, first.Round(10*time.Millisecond)))
}

// connectionNode is the node a service's connection is on, from the
// management API, which lists a connection some seconds after it opened
// (its statistics interval).
func connectionNode(ctx context.Context, s *Suite, service string) (string, error) {
	cfg := s.Lab.Config()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var conns []struct {
			Node             string `json:"node"`
			ClientProperties struct {
				ConnectionName string `json:"connection_name"`
			} `json:"client_properties"`
		}
		err := getJSON(ctx, s.Lab.ManagementURL()+"/api/connections", cfg.RabbitMQUser+":"+cfg.RabbitMQPass, &conns)
		for _, c := range conns {
			if c.ClientProperties.ConnectionName == service {
				return c.Node, nil
			}
		}
		if err == nil {
			err = fmt.Errorf("the management API lists no connection named %s", service)
		}
		if time.Now().After(deadline) {
			return "", err
		}
		if err := waitCtx(ctx, 500*time.Millisecond); err != nil {
			return "", err
		}
	}
}
