package main

import (
	"bufio"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/caarlos0/env/v11"
	amqp "github.com/rabbitmq/amqp091-go"
)

// getenvFrom returns a getenv that reads vars.
func getenvFrom(vars map[string]string) func(string) string {
	return func(key string) string { return vars[key] }
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := parseConfig(getenvFrom(nil))
	if err != nil {
		t.Fatalf("parseConfig with an empty environment: %v", err)
	}
	want := config{
		Port: 8002, ListenHost: "", LogLevel: "info",
		RabbitMQConfig: RabbitMQConfig{
			RabbitMQHost: "localhost", RabbitMQPort: 5672, RabbitMQUser: "lab", RabbitMQPass: "lab", RabbitMQVHost: "/",
			Exchange: "pings", RoutingKey: "ping.created", Queue: "pings", QueueType: "quorum", DeliveryLimit: 5,
			DeadLetterExchange: "pings.dlx", DeadLetterQueue: "pings.dead",
			LogStream: "pings.log", LogMaxAge: "7D", LogMaxBytes: 100_000_000, LogSegmentBytes: 10_000_000,
		},
		Prefetch: 200, StoreCapacity: 10000, Replay: false,
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", cfg, want)
	}
	if cfg.HTTPAddr() != ":8002" {
		t.Errorf("HTTPAddr = %q, want %q", cfg.HTTPAddr(), ":8002")
	}
	if cfg.Level() != slog.LevelInfo {
		t.Errorf("Level = %v, want info", cfg.Level())
	}
}

// TestConfigMatchesEnvExample checks that every variable service02 reads is
// in .env.example, with the default written there.
func TestConfigMatchesEnvExample(t *testing.T) {
	f, err := os.Open("../.env.example")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	example := make(map[string]string)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if key, value, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			example[key] = value
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}

	params, err := env.GetFieldParams(&config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range params {
		key, def := p.Key, p.DefaultValue
		value, ok := example[key]
		if !ok {
			t.Errorf("%s is not in .env.example", key)
			continue
		}
		if value != def {
			t.Errorf("%s: default %q, .env.example says %q", key, def, value)
		}
	}
}

func TestConfigFromEnvironment(t *testing.T) {
	cfg, err := parseConfig(getenvFrom(map[string]string{
		"SERVICE02_PORT":           "9002",
		"LISTEN_HOST":              "::1",
		"LOG_LEVEL":                "DEBUG",
		"RABBITMQ_QUEUE_TYPE":      "classic",
		"SERVICE02_PREFETCH":       "10",
		"SERVICE02_STORE_CAPACITY": "5",
		"RABBITMQ_HOST":            "", // empty: the default
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPAddr() != "[::1]:9002" {
		t.Errorf("HTTPAddr = %q, want [::1]:9002", cfg.HTTPAddr())
	}
	if cfg.Level() != slog.LevelDebug {
		t.Errorf("Level = %v, want debug", cfg.Level())
	}
	if cfg.QueueType != "classic" || cfg.Prefetch != 10 || cfg.StoreCapacity != 5 || cfg.RabbitMQHost != "localhost" {
		t.Errorf("config = %+v", cfg)
	}
}

func TestConfigInvalid(t *testing.T) {
	tests := []struct {
		name      string
		vars      map[string]string
		wantLines []string
	}{
		{"queue type", map[string]string{"RABBITMQ_QUEUE_TYPE": "x"},
			[]string{`RABBITMQ_QUEUE_TYPE: must be "quorum" or "classic", got "x"`}},
		{"port not a number", map[string]string{"SERVICE02_PORT": "http"},
			[]string{`SERVICE02_PORT: must be a whole number, got "http"`}},
		{"port out of range", map[string]string{"SERVICE02_PORT": "70000", "RABBITMQ_PORT": "0"},
			[]string{"SERVICE02_PORT: must be a port number from 1 to 65535, got 70000",
				"RABBITMQ_PORT: must be a port number from 1 to 65535, got 0"}},
		{"prefetch", map[string]string{"SERVICE02_PREFETCH": "0"},
			[]string{"SERVICE02_PREFETCH: must be from 1 to 65535, got 0"}},
		{"prefetch too large", map[string]string{"SERVICE02_PREFETCH": "65536"},
			[]string{"SERVICE02_PREFETCH: must be from 1 to 65535, got 65536"}},
		{"capacity", map[string]string{"SERVICE02_STORE_CAPACITY": "-1"},
			[]string{"SERVICE02_STORE_CAPACITY: must be at least 1, got -1"}},
		{"delivery limit", map[string]string{"RABBITMQ_DELIVERY_LIMIT": "0"},
			[]string{"RABBITMQ_DELIVERY_LIMIT: must be at least 1, got 0"}},
		{"log level", map[string]string{"LOG_LEVEL": "verbose"},
			[]string{`LOG_LEVEL: must be "debug", "info", "warn" or "error", got "verbose"`}},
		{"reserved name", map[string]string{"RABBITMQ_QUEUE": "amq.mine"},
			[]string{`RABBITMQ_QUEUE: must not start with "amq."`}},
		{"long name", map[string]string{"RABBITMQ_EXCHANGE": strings.Repeat("e", 256)},
			[]string{"RABBITMQ_EXCHANGE: must be at most 255 bytes long, got 256"}},
		{"same queue twice", map[string]string{"RABBITMQ_DEAD_LETTER_QUEUE": "pings"},
			[]string{`RABBITMQ_DEAD_LETTER_QUEUE: must differ from RABBITMQ_QUEUE (both are "pings")`}},
		{"log stream named like the queue", map[string]string{"RABBITMQ_LOG_STREAM": "pings"},
			[]string{`RABBITMQ_LOG_STREAM: must differ from RABBITMQ_QUEUE and RABBITMQ_DEAD_LETTER_QUEUE, got "pings"`}},
		{"log max age without a unit", map[string]string{"RABBITMQ_LOG_MAX_AGE": "7"},
			[]string{`RABBITMQ_LOG_MAX_AGE: must be a whole number and a unit: Y, M, D, h, m or s (years to seconds), such as 7D or 12h; got "7"`}},
		{"log max age in days, lower case", map[string]string{"RABBITMQ_LOG_MAX_AGE": "7d"},
			[]string{`RABBITMQ_LOG_MAX_AGE: must be a whole number and a unit`}},
		{"log max bytes", map[string]string{"RABBITMQ_LOG_MAX_BYTES": "0"},
			[]string{"RABBITMQ_LOG_MAX_BYTES: must be at least 1, got 0"}},
		{"log segment larger than the log", map[string]string{"RABBITMQ_LOG_MAX_BYTES": "1000000", "RABBITMQ_LOG_SEGMENT_BYTES": "2000000"},
			[]string{"RABBITMQ_LOG_SEGMENT_BYTES: must be from 1 to RABBITMQ_LOG_MAX_BYTES (1000000) and at most 3000000000, got 2000000"}},
		{"replay not a bool", map[string]string{"SERVICE02_REPLAY": "yes please"},
			[]string{"SERVICE02_REPLAY"}},
		{"several at once", map[string]string{"RABBITMQ_QUEUE_TYPE": "x", "SERVICE02_PREFETCH": "many", "RABBITMQ_PORT": "-5"},
			[]string{`RABBITMQ_QUEUE_TYPE: must be "quorum"`, `SERVICE02_PREFETCH: must be a whole number, got "many"`, "RABBITMQ_PORT: must be a port number"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseConfig(getenvFrom(tt.vars))
			if err == nil {
				t.Fatal("parseConfig accepted it")
			}
			lines := strings.Split(err.Error(), "\n")
			// A heading, then exactly one line per problem.
			if len(lines) != 1+len(tt.wantLines) {
				t.Errorf("got %d lines, want 1 + %d:\n%s", len(lines), len(tt.wantLines), err)
			}
			for _, want := range tt.wantLines {
				found := false
				for _, line := range lines[1:] {
					found = found || strings.HasPrefix(line, want)
				}
				if !found {
					t.Errorf("no line starts with %q in:\n%s", want, err)
				}
			}
		})
	}
}

func TestAMQPURLEscapes(t *testing.T) {
	for _, c := range []struct{ user, pass, vhost string }{
		{"lab", "lab", "/"},
		{"us@r:x", "p@ss/w:rd?#%", "/"},
		{"lab", "lab", "my vhost/with?odd#chars%"},
		{"lab", "lab", ""},
	} {
		cfg, err := parseConfig(getenvFrom(map[string]string{
			"RABBITMQ_HOST": "broker.example", "RABBITMQ_PORT": "5673",
			"RABBITMQ_DEFAULT_USER": c.user, "RABBITMQ_DEFAULT_PASS": c.pass, "RABBITMQ_VHOST": c.vhost,
		}))
		if err != nil {
			t.Fatal(err)
		}
		wantVhost := c.vhost
		if wantVhost == "" {
			wantVhost = "/" // empty takes the default
		}
		uri, err := amqp.ParseURI(cfg.AMQPURL(cfg.RabbitMQAddrs()[0]))
		if err != nil {
			t.Fatalf("ParseURI(%q): %v", cfg.AMQPURL(cfg.RabbitMQAddrs()[0]), err)
		}
		if uri.Host != "broker.example" || uri.Port != 5673 || uri.Username != c.user || uri.Password != c.pass || uri.Vhost != wantVhost {
			t.Errorf("%q parses as host %q port %d user %q password %q vhost %q; want %+v",
				cfg.AMQPURL(cfg.RabbitMQAddrs()[0]), uri.Host, uri.Port, uri.Username, uri.Password, uri.Vhost, c)
		}
	}
}

// LOG_LEVEL is read in any case, the same in both services.
func TestLogLevelAnyCase(t *testing.T) {
	for value, want := range map[string]slog.Level{"debug": slog.LevelDebug, "INFO": slog.LevelInfo, "Warn": slog.LevelWarn, "ERROR": slog.LevelError} {
		cfg, err := parseConfig(getenvFrom(map[string]string{"LOG_LEVEL": value}))
		if err != nil {
			t.Errorf("LOG_LEVEL=%s: %v", value, err)
			continue
		}
		if got := cfg.Level(); got != want {
			t.Errorf("LOG_LEVEL=%s: level %v, want %v", value, got, want)
		}
	}
}

// RABBITMQ_ADDRESSES gives the nodes of a cluster, in the order dial tries
// them; each may leave out the port. Without it, the one node is
// RABBITMQ_HOST:RABBITMQ_PORT.
func TestRabbitMQAddresses(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want []string
	}{
		{map[string]string{"RABBITMQ_HOST": "rabbitmq"}, []string{"rabbitmq:5672"}},
		{map[string]string{"RABBITMQ_ADDRESSES": ""}, []string{"localhost:5672"}},
		{map[string]string{"RABBITMQ_ADDRESSES": "rabbitmq-1,rabbitmq-2, rabbitmq-3", "RABBITMQ_PORT": "5673", "RABBITMQ_HOST": "ignored"},
			[]string{"rabbitmq-1:5673", "rabbitmq-2:5673", "rabbitmq-3:5673"}},
		{map[string]string{"RABBITMQ_ADDRESSES": "127.0.0.1:5672,127.0.0.1:5682,[::1]:5692"},
			[]string{"127.0.0.1:5672", "127.0.0.1:5682", "[::1]:5692"}},
	}
	for _, tt := range tests {
		cfg, err := parseConfig(getenvFrom(tt.env))
		if err != nil {
			t.Errorf("%v: %v", tt.env, err)
			continue
		}
		if got := cfg.RabbitMQAddrs(); !slices.Equal(got, tt.want) {
			t.Errorf("%v: RabbitMQAddrs() = %q, want %q", tt.env, got, tt.want)
		}
	}

	for _, bad := range []string{"a,,b", "a:b:c", "a:0", "a:65536", "a:port", "user@a", ":5672", "a/b"} {
		_, err := parseConfig(getenvFrom(map[string]string{"RABBITMQ_ADDRESSES": bad}))
		if err == nil || !strings.Contains(err.Error(), "\nRABBITMQ_ADDRESSES: must be the nodes' addresses, host or host:port each") {
			t.Errorf("RABBITMQ_ADDRESSES=%q: error %v, want one naming RABBITMQ_ADDRESSES", bad, err)
		}
	}
}
