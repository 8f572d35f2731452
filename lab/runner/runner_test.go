package runner

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestParseParts(t *testing.T) {
	tests := []struct {
		args    []string
		want    string
		wantErr string
	}{
		{nil, "rabbitmq service01 service02 nginx", ""},
		{[]string{"service01", "rabbitmq"}, "rabbitmq service01", ""},
		{[]string{"nginx", "nginx"}, "nginx", ""},
		{[]string{"rabbit"}, "", `unknown part "rabbit": the parts are rabbitmq, service01, service02, nginx`},
	}
	for _, tt := range tests {
		got, err := ParseParts(tt.args)
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("ParseParts(%q) error = %v, want %q", tt.args, err, tt.wantErr)
			}
			continue
		}
		if err != nil || strings.Join(got, " ") != tt.want {
			t.Errorf("ParseParts(%q) = %q, %v, want %q", tt.args, got, err, tt.want)
		}
	}
}

func TestLoadConfig(t *testing.T) {
	cfg, err := LoadConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{GatewayPort: 8000, GatewayAddress: "127.0.0.1", RateLimit: "100000r/s", RateBurst: 10000, ClientTimeout: "10s", Service01Port: 8001, Service02Port: 8002, RabbitMQPort: 5672, ManagementPort: 15672, Nodes: 1, RabbitMQUser: "lab", RabbitMQPass: "lab"}
	if cfg != want {
		t.Errorf("defaults = %+v, want %+v", cfg, want)
	}

	cfg, err = LoadConfig([]string{"GATEWAY_PORT=9000", "RABBITMQ_DEFAULT_USER=me"})
	if err != nil || cfg.GatewayPort != 9000 || cfg.RabbitMQUser != "me" {
		t.Errorf("overrides = %+v, %v", cfg, err)
	}

	_, err = LoadConfig([]string{"GATEWAY_PORT=eighty", "SERVICE01_PORT=70000"})
	if err == nil {
		t.Fatal("invalid ports accepted")
	}
	if !strings.Contains(err.Error(), "GATEWAY_PORT") {
		t.Errorf("error %q does not name GATEWAY_PORT", err)
	}
	_, err = LoadConfig([]string{"GATEWAY_RATE_LIMIT=100"})
	if err == nil || !strings.Contains(err.Error(), "GATEWAY_RATE_LIMIT: must be requests per second or minute") {
		t.Errorf("bad rate: error = %v", err)
	}
	_, err = LoadConfig([]string{"GATEWAY_ADDRESS=localhost"})
	if err == nil || !strings.Contains(err.Error(), "GATEWAY_ADDRESS: must be an IPv4 address of this machine") {
		t.Errorf("bad address: error = %v", err)
	}
	_, err = LoadConfig([]string{"GATEWAY_CLIENT_TIMEOUT=10"})
	if err == nil || !strings.Contains(err.Error(), "GATEWAY_CLIENT_TIMEOUT: must be a time as nginx writes it") {
		t.Errorf("bad client timeout: error = %v", err)
	}
	_, err = LoadConfig([]string{"SERVICE01_PORT=70000"})
	if err == nil || !strings.Contains(err.Error(), "SERVICE01_PORT: must be a port number from 1 to 65535, got 70000") {
		t.Errorf("out-of-range port: error = %v", err)
	}
	for _, n := range []string{"0", "2", "5"} {
		_, err = LoadConfig([]string{"RABBITMQ_NODES=" + n})
		if err == nil || !strings.Contains(err.Error(), "RABBITMQ_NODES: must be 1 (one broker node) or 3 (a cluster of three), got "+n) {
			t.Errorf("RABBITMQ_NODES=%s: error = %v", n, err)
		}
	}
}

// TestStartReportsATakenPort holds the gateway's port and checks that Start
// names it and the variable to change, and starts nothing.
func TestStartReportsATakenPort(t *testing.T) {
	l, err := NewTest(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(l.cfg.GatewayPort))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	err = l.Start(context.Background(), []string{"nginx"})
	if err == nil {
		l.Stop()
		t.Fatal("Start succeeded on a taken port")
	}
	want := "port " + strconv.Itoa(l.cfg.GatewayPort) + " (GATEWAY_PORT) is already in use"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error = %q, want it to contain %q", err, want)
	}
	if len(l.started) != 0 || l.gateway.proc != nil {
		t.Errorf("parts were started: %v", l.started)
	}
}

// TestStartReportsAServiceThatCannotGetReady starts service01 alone, with no
// broker: it must fail with the service's own reason and stop the service.
func TestStartReportsAServiceThatCannotGetReady(t *testing.T) {
	l, err := NewTest(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	l.services["service01"].readyLimit = 2 * time.Second
	err = l.Start(context.Background(), []string{"service01"})
	if err == nil {
		l.Stop()
		t.Fatal("service01 got ready without a broker")
	}
	for _, want := range []string{"service01 did not get ready", "/readyz answered 503", "make run PARTS='rabbitmq service01'"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error = %q, want it to contain %q", err, want)
		}
	}
	if !l.services["service01"].proc.exited() {
		t.Error("service01 still runs after the failed start")
	}
}

func TestFindScript(t *testing.T) {
	t.Setenv(SysrootEnv, "")
	debian := t.TempDir()
	onPath := t.TempDir()
	t.Setenv("PATH", onPath)
	if _, err := findScript(debian, "rabbitmq-server"); err == nil || !strings.Contains(err.Error(), "make deps") {
		t.Errorf("with no RabbitMQ anywhere: %v, want an error that says to run make deps", err)
	}
	// Installed some other way (Homebrew): the script on PATH.
	mustExecutable(t, filepath.Join(onPath, "rabbitmq-server"))
	if got, err := findScript(debian, "rabbitmq-server"); err != nil || got != filepath.Join(onPath, "rabbitmq-server") {
		t.Errorf("with rabbitmq-server on PATH: %q, %v", got, err)
	}
	// Debian's scripts win: they run as the caller.
	mustExecutable(t, filepath.Join(debian, "rabbitmq-server"))
	if got, err := findScript(debian, "rabbitmq-server"); err != nil || got != filepath.Join(debian, "rabbitmq-server") {
		t.Errorf("with Debian's script: %q, %v", got, err)
	}
	// A sysroot always has Debian's layout, and says so when it lacks it.
	t.Setenv(SysrootEnv, t.TempDir())
	if _, err := findScript(debian, "rabbitmq-server"); err == nil || !strings.Contains(err.Error(), "make sysroot") {
		t.Errorf("with an empty sysroot: %v, want an error that says to run make sysroot", err)
	}
}

func mustExecutable(tb testing.TB, path string) {
	tb.Helper()
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"), 0o755); err != nil {
		tb.Fatal(err)
	}
}

// TestClaimPort: a port claimed once cannot be claimed again while the claim
// is held. (flock locks belong to an open file, so a second claim here
// fails as another process's would.)
func TestClaimPort(t *testing.T) {
	ports, err := FreePorts(1) // claims it
	if err != nil {
		t.Fatal(err)
	}
	if claimPort(ports[0]) {
		t.Errorf("port %d was claimed twice", ports[0])
	}
}

// TestGatewayListensOnTheLoopbackByDefault starts the gateway with the
// default GATEWAY_ADDRESS and with 0.0.0.0, and reads from the kernel's
// table of listening sockets (what ss -ltn shows) where it listens.
func TestGatewayListensOnTheLoopbackByDefault(t *testing.T) {
	for _, tt := range []struct {
		env  []string
		want string
	}{
		{nil, "127.0.0.1"},
		{[]string{"GATEWAY_ADDRESS=0.0.0.0"}, "0.0.0.0"},
	} {
		l, err := NewTest(t.TempDir(), tt.env...)
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Start(context.Background(), []string{"nginx"}); err != nil {
			t.Fatal(err)
		}
		got := listeningOn(t, l.cfg.GatewayPort)
		l.Stop()
		if len(got) != 1 || got[0] != tt.want {
			t.Errorf("with %v the gateway listens on %v, want %s only", tt.env, got, tt.want)
		}
	}
}

// listeningOn returns the IPv4 addresses on which a socket listens on port,
// from /proc/net/tcp.
func listeningOn(t *testing.T, port int) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 || f[3] != "0A" { // 0A: LISTEN
			continue
		}
		hexIP, hexPort, _ := strings.Cut(f[1], ":")
		if p, _ := strconv.ParseUint(hexPort, 16, 16); int(p) != port {
			continue
		}
		ip, _ := strconv.ParseUint(hexIP, 16, 32) // little-endian on the machines the lab runs on
		addrs = append(addrs, net.IPv4(byte(ip), byte(ip>>8), byte(ip>>16), byte(ip>>24)).String())
	}
	return addrs
}
