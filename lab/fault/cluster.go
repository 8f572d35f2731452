package fault

import (
	"context"
	"fmt"
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
