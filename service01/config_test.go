package main

import (
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// getenvFrom returns a getenv that reads vars.
func getenvFrom(vars map[string]string) func(string) string {
	return func(key string) string { return vars[key] }
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := parseConfig(getenvFrom(nil))
	if err != nil {
		t.Fatalf("parseConfig with no variables: %v", err)
	}
	want := config{
		Port:       8001,
		ListenHost: "",
		LogLevel:   "info",
		RabbitMQConfig: RabbitMQConfig{
			RabbitMQHost:       "localhost",
			RabbitMQPort:       5672,
			RabbitMQUser:       "lab",
			RabbitMQPass:       "lab",
			RabbitMQVHost:      "/",
			Exchange:           "pings",
			RoutingKey:         "ping.created",
			Queue:              "pings",
			QueueType:          "quorum",
			DeliveryLimit:      5,
			DeadLetterExchange: "pings.dlx",
			DeadLetterQueue:    "pings.dead",
			LogStream:          "pings.log",
			LogMaxAge:          "7D",
			LogMaxBytes:        100_000_000,
			LogSegmentBytes:    10_000_000,
		},
		ConfirmTimeout:  5 * time.Second,
		PublishChannels: 2,
		MaxInFlight:     512,
		IdempotencyTTL:  24 * time.Hour,
		IdempotencyKeys: 100000,
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", cfg, want)
	}
	if got := cfg.AMQPURL(cfg.RabbitMQAddrs()[0]); got != "amqp://lab:lab@localhost:5672/%2F" {
		t.Errorf("AMQPURL() = %q", got)
	}
	if got := cfg.HTTPAddr(); got != ":8001" {
		t.Errorf("HTTPAddr() = %q, want :8001", got)
	}
}

func TestConfigFromEnvironment(t *testing.T) {
	cfg, err := parseConfig(getenvFrom(map[string]string{
		"SERVICE01_PORT":             "9001",
		"LISTEN_HOST":                "::1",
		"RABBITMQ_HOST":              "rabbitmq",
		"RABBITMQ_DEFAULT_USER":      "us@r:x",
		"RABBITMQ_DEFAULT_PASS":      "p/ss?#%",
		"RABBITMQ_VHOST":             "lab/one",
		"RABBITMQ_QUEUE_TYPE":        "classic",
		"SERVICE01_CONFIRM_TIMEOUT":  "1500ms",
		"SERVICE01_PUBLISH_CHANNELS": "8",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPAddr() != "[::1]:9001" {
		t.Errorf("HTTPAddr() = %q, want [::1]:9001", cfg.HTTPAddr())
	}
	if cfg.QueueType != "classic" || cfg.ConfirmTimeout != 1500*time.Millisecond || cfg.PublishChannels != 8 {
		t.Errorf("config = %+v", cfg)
	}
	// Reserved characters in the login and the vhost are escaped.
	if got, want := cfg.AMQPURL(cfg.RabbitMQAddrs()[0]), "amqp://us%40r%3Ax:p%2Fss%3F%23%25@rabbitmq:5672/lab%2Fone"; got != want {
		t.Errorf("AMQPURL() = %q, want %q", got, want)
	}
}

func TestConfigInvalid(t *testing.T) {
	_, err := parseConfig(getenvFrom(map[string]string{
		"SERVICE01_PORT":             "70000",
		"RABBITMQ_PORT":              "amqp",
		"RABBITMQ_QUEUE_TYPE":        "x",
		"SERVICE01_PUBLISH_CHANNELS": "0",
		"SERVICE01_CONFIRM_TIMEOUT":  "5",
		"LOG_LEVEL":                  "verbose",
		"RABBITMQ_DELIVERY_LIMIT":    "-1",
	}))
	if err == nil {
		t.Fatal("parseConfig accepted invalid values")
	}
	wantLines := []string{
		"invalid configuration (.env.example lists every variable):",
		`RABBITMQ_PORT: must be a whole number, got "amqp"`,
		`SERVICE01_CONFIRM_TIMEOUT: must be a duration such as 5s or 500ms, got "5"`,
		"SERVICE01_PORT: must be a port number from 1 to 65535, got 70000",
		`LOG_LEVEL: must be "debug", "info", "warn" or "error", got "verbose"`,
		`RABBITMQ_QUEUE_TYPE: must be "quorum" or "classic", got "x"`,
		"RABBITMQ_DELIVERY_LIMIT: must be at least 1, got -1",
		"SERVICE01_PUBLISH_CHANNELS: must be between 1 and 2047 (RabbitMQ's default channel_max), got 0",
	}
	lines := strings.Split(err.Error(), "\n")
	for _, want := range wantLines {
		found := false
		for _, l := range lines {
			if l == want {
				found = true
			}
		}
		if !found {
			t.Errorf("no line %q in:\n%s", want, err)
		}
	}
	if len(lines) != len(wantLines) {
		t.Errorf("%d lines, want %d (one per problem):\n%s", len(lines), len(wantLines), err)
	}
}

func TestConfigInvalidOneAtATime(t *testing.T) {
	tests := []struct {
		key, value, want string
	}{
		{"SERVICE01_PORT", "0", "SERVICE01_PORT: must be a port number from 1 to 65535, got 0"},
		{"SERVICE01_PORT", "http", `SERVICE01_PORT: must be a whole number, got "http"`},
		{"RABBITMQ_PORT", "-5", "RABBITMQ_PORT: must be a port number from 1 to 65535, got -5"},
		{"RABBITMQ_QUEUE_TYPE", "stream", `RABBITMQ_QUEUE_TYPE: must be "quorum" or "classic", got "stream"`},
		{"SERVICE01_PUBLISH_CHANNELS", "-1", "SERVICE01_PUBLISH_CHANNELS: must be between 1 and 2047"},
		{"SERVICE01_PUBLISH_CHANNELS", "5000", "SERVICE01_PUBLISH_CHANNELS: must be between 1 and 2047"},
		{"SERVICE01_MAX_IN_FLIGHT", "0", "SERVICE01_MAX_IN_FLIGHT: must be between 1 and 65535, got 0"},
		{"SERVICE01_MAX_IN_FLIGHT", "100000", "SERVICE01_MAX_IN_FLIGHT: must be between 1 and 65535, got 100000"},
		{"SERVICE01_CONFIRM_TIMEOUT", "-1s", "SERVICE01_CONFIRM_TIMEOUT: must be more than 0, got -1s"},
		{"SERVICE01_CONFIRM_TIMEOUT", "soon", `SERVICE01_CONFIRM_TIMEOUT: must be a duration such as 5s or 500ms, got "soon"`},
		{"SERVICE01_IDEMPOTENCY_TTL", "0s", "SERVICE01_IDEMPOTENCY_TTL: must be more than 0, got 0s"},
		{"SERVICE01_IDEMPOTENCY_TTL", "a day", `SERVICE01_IDEMPOTENCY_TTL: must be a duration such as 5s or 500ms, got "a day"`},
		{"SERVICE01_IDEMPOTENCY_KEYS", "0", "SERVICE01_IDEMPOTENCY_KEYS: must be at least 1, got 0"},
	}
	for _, tt := range tests {
		t.Run(tt.key+"="+tt.value, func(t *testing.T) {
			_, err := parseConfig(getenvFrom(map[string]string{tt.key: tt.value}))
			if err == nil {
				t.Fatalf("%s=%q accepted", tt.key, tt.value)
			}
			if !strings.Contains(err.Error(), "\n"+tt.want) {
				t.Errorf("error:\n%s\nwant a line starting %q", err, tt.want)
			}
		})
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
