package compose

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
)

// nodes are the compose cluster's RabbitMQ services, first node first.
var nodes = []string{"rabbitmq", "rabbitmq-2", "rabbitmq-3"}

func mustLoadCluster(tb testing.TB, env map[string]string) *types.Project {
	tb.Helper()
	return mustLoadFiles(tb, env, composeFiles...)
}

// TestClusterNodes checks what makes docker-compose.cluster.yml's three
// nodes one cluster: the same image and login, the same Erlang cookie, the
// peer list naming each node by its hostname, a data volume each, and a
// healthcheck that passes once a node has booted (and so joined).
func TestClusterNodes(t *testing.T) {
	p := mustLoadCluster(t, mustEnvExample(t))
	single := mustService(t, mustLoadProject(t, mustEnvExample(t)), "rabbitmq")
	root := repoRoot(t)

	conf, err := os.ReadFile(filepath.Join(root, "rabbitmq", "cluster.conf"))
	if err != nil {
		t.Fatal(err)
	}
	var peers []string
	for _, m := range regexp.MustCompile(`(?m)^cluster_formation\.classic_config\.nodes\.\d+ = (\S+)$`).FindAllStringSubmatch(string(conf), -1) {
		peers = append(peers, m[1])
	}
	var want []string
	for _, n := range nodes {
		want = append(want, "rabbit@"+n)
	}
	if !slices.Equal(peers, want) {
		t.Errorf("rabbitmq/cluster.conf lists the peers %q, want %q: each node is rabbit@<its hostname>", peers, want)
	}

	var cookie string
	volumes := map[string]string{}
	for _, name := range nodes {
		s := mustService(t, p, name)
		if s.Image != single.Image {
			t.Errorf("%s: image %q, want the single node's %q", name, s.Image, single.Image)
		}
		if s.Hostname != name {
			t.Errorf("%s: hostname %q, want %q (its node name is rabbit@<hostname>, as cluster.conf lists it)", name, s.Hostname, name)
		}
		if s.User != single.User {
			t.Errorf("%s: user %q, want the single node's %q", name, s.User, single.User)
		}
		env := containerEnv(s)
		for _, v := range []string{"RABBITMQ_DEFAULT_USER", "RABBITMQ_DEFAULT_PASS", "RABBITMQ_DEFAULT_VHOST"} {
			if env[v] != containerEnv(single)[v] {
				t.Errorf("%s: %s=%q, want the single node's %q", name, v, env[v], containerEnv(single)[v])
			}
		}
		if cookie == "" {
			cookie = env["RABBITMQ_ERLANG_COOKIE"]
		}
		if env["RABBITMQ_ERLANG_COOKIE"] == "" || env["RABBITMQ_ERLANG_COOKIE"] != cookie {
			t.Errorf("%s: RABBITMQ_ERLANG_COOKIE=%q, want the same cookie on every node (%q)", name, env["RABBITMQ_ERLANG_COOKIE"], cookie)
		}
		mounts := map[string]string{}
		for _, v := range s.Volumes {
			mounts[v.Target] = v.Source
			if v.Target == "/var/lib/rabbitmq" {
				if other, ok := volumes[v.Source]; ok {
					t.Errorf("%s and %s share the data volume %s", other, name, v.Source)
				}
				volumes[v.Source] = name
			}
		}
		for target, source := range map[string]string{
			"/etc/rabbitmq/rabbitmq.conf":          filepath.Join(root, "rabbitmq", "rabbitmq.conf"),
			"/etc/rabbitmq/enabled_plugins":        filepath.Join(root, "rabbitmq", "enabled_plugins"),
			"/etc/rabbitmq/conf.d/20-cluster.conf": filepath.Join(root, "rabbitmq", "cluster.conf"),
		} {
			if mounts[target] != source {
				t.Errorf("%s: %s is mounted from %q, want %q", name, target, mounts[target], source)
			}
		}
		if _, ok := mounts["/var/lib/rabbitmq"]; !ok {
			t.Errorf("%s: no data volume at /var/lib/rabbitmq", name)
		}
		if hc := s.HealthCheck; hc == nil || !slices.Equal(hc.Test, []string{"CMD", "rabbitmq-diagnostics", "-q", "check_running"}) {
			t.Errorf("%s: healthcheck %+v, want rabbitmq-diagnostics -q check_running", name, hc)
		}
	}
}

// TestClusterServices checks that the services are given every node and
// start once all three have booted, so that the queues they declare are
// spread over the three.
func TestClusterServices(t *testing.T) {
	p := mustLoadCluster(t, mustEnvExample(t))
	for _, name := range []string{"service01", "service02"} {
		s := mustService(t, p, name)
		if got, want := containerEnv(s)["RABBITMQ_ADDRESSES"], strings.Join(nodes, ","); got != want {
			t.Errorf("%s: RABBITMQ_ADDRESSES=%q, want %q", name, got, want)
		}
		for _, n := range nodes {
			if d, ok := s.DependsOn[n]; !ok || d.Condition != types.ServiceConditionHealthy {
				t.Errorf("%s: depends_on %s = %+v, want condition service_healthy", name, n, d)
			}
		}
	}
}

// TestClusterPorts checks that only the first node publishes AMQP, and that
// each node publishes its management UI on the loopback, on the port its
// variable names.
func TestClusterPorts(t *testing.T) {
	env := with(mustEnvExample(t), "RABBITMQ_MANAGEMENT_PORT=20001", "RABBITMQ_MANAGEMENT_PORT_2=20002", "RABBITMQ_MANAGEMENT_PORT_3=20003", "RABBITMQ_PORT=20004")
	p := mustLoadCluster(t, env)
	want := map[string][]port{
		"rabbitmq":   {{"127.0.0.1", "20004", 5672}, {"127.0.0.1", "20001", 15672}},
		"rabbitmq-2": {{"127.0.0.1", "20002", 15672}},
		"rabbitmq-3": {{"127.0.0.1", "20003", 15672}},
	}
	for name, w := range want {
		if got := ports(mustService(t, p, name)); !slices.Equal(got, w) {
			t.Errorf("%s publishes %+v, want %+v", name, got, w)
		}
	}
}
