package runner

import (
	"errors"
	"fmt"
	"net"
	"reflect"
	"regexp"
	"strings"

	"github.com/caarlos0/env/v11"
)

// Config is what the runner needs to know to start the lab natively. The
// services read the rest of the environment themselves (see .env.example).
type Config struct {
	GatewayPort int `env:"GATEWAY_PORT" envDefault:"8000"`
	// The address the gateway listens on: the loopback, so only this
	// machine reaches the lab, unless the user opens it (0.0.0.0).
	GatewayAddress string `env:"GATEWAY_ADDRESS" envDefault:"127.0.0.1"`
	RateLimit      string `env:"GATEWAY_RATE_LIMIT" envDefault:"100000r/s"`
	RateBurst      int    `env:"GATEWAY_RATE_BURST" envDefault:"10000"`
	ClientTimeout  string `env:"GATEWAY_CLIENT_TIMEOUT" envDefault:"10s"`
	Service01Port  int    `env:"SERVICE01_PORT" envDefault:"8001"`
	Service02Port  int    `env:"SERVICE02_PORT" envDefault:"8002"`
	RabbitMQPort   int    `env:"RABBITMQ_PORT" envDefault:"5672"`
	ManagementPort int    `env:"RABBITMQ_MANAGEMENT_PORT" envDefault:"15672"`
	// One broker node, or a cluster of three on RABBITMQ_PORT and the two
	// ports after it (and after each of its other ports).
	Nodes        int    `env:"RABBITMQ_NODES" envDefault:"1"`
	RabbitMQUser string `env:"RABBITMQ_DEFAULT_USER" envDefault:"lab"`
	RabbitMQPass string `env:"RABBITMQ_DEFAULT_PASS" envDefault:"lab"`
}

// LoadConfig reads the runner's configuration from environ (KEY=value
// pairs) and reports every problem at once, one line each.
func LoadConfig(environ []string) (Config, error) {
	var cfg Config
	vars := env.ToMap(environ)
	err := env.ParseWithOptions(&cfg, env.Options{Environment: vars})
	var problems []string
	var aggregate env.AggregateError
	if errors.As(err, &aggregate) {
		for _, e := range aggregate.Errors {
			problems = append(problems, describeEnvError(reflect.TypeOf(cfg), vars, e))
		}
	} else if err != nil {
		problems = append(problems, err.Error())
	}
	for _, p := range cfg.ports() {
		if err == nil && (p.port < 1 || p.port > 65535) {
			problems = append(problems, fmt.Sprintf("%s: must be a port number from 1 to 65535, got %d", p.name, p.port))
		}
	}
	if err == nil && !rateRE.MatchString(cfg.RateLimit) {
		problems = append(problems, fmt.Sprintf("GATEWAY_RATE_LIMIT: must be requests per second or minute as nginx writes them, e.g. 100r/s or 600r/m, got %q", cfg.RateLimit))
	}
	if err == nil && !timeRE.MatchString(cfg.ClientTimeout) {
		problems = append(problems, fmt.Sprintf("GATEWAY_CLIENT_TIMEOUT: must be a time as nginx writes it, e.g. 10s or 500ms, got %q", cfg.ClientTimeout))
	}
	if ip := net.ParseIP(cfg.GatewayAddress); err == nil && (ip == nil || ip.To4() == nil) {
		problems = append(problems, fmt.Sprintf("GATEWAY_ADDRESS: must be an IPv4 address of this machine, e.g. 127.0.0.1 (this machine only) or 0.0.0.0 (every network it is on), got %q", cfg.GatewayAddress))
	}
	if err == nil && cfg.Nodes != 1 && cfg.Nodes != 3 {
		// Two nodes have no majority once one is gone, and more than three
		// is more than one machine's lab needs to show what a cluster does.
		problems = append(problems, fmt.Sprintf("RABBITMQ_NODES: must be 1 (one broker node) or 3 (a cluster of three), got %d", cfg.Nodes))
	}
	if err == nil && cfg.RateBurst < 1 {
		problems = append(problems, fmt.Sprintf("GATEWAY_RATE_BURST: must be 1 or more, got %d", cfg.RateBurst))
	}
	if len(problems) > 0 {
		return Config{}, fmt.Errorf("invalid configuration:\n  %s", strings.Join(problems, "\n  "))
	}
	return cfg, nil
}

// rateRE is the form of nginx's limit_req_zone rate.
var rateRE = regexp.MustCompile(`^[1-9][0-9]*r/[sm]$`)

// timeRE is the form of an nginx time such as client_body_timeout's.
var timeRE = regexp.MustCompile(`^[1-9][0-9]*(ms|s|m)$`)

// describeEnvError names the variable behind a parse error, which the env
// package reports by struct field.
func describeEnvError(t reflect.Type, vars map[string]string, err error) string {
	var parseErr env.ParseError
	if !errors.As(err, &parseErr) {
		return err.Error()
	}
	field, ok := t.FieldByName(parseErr.Name)
	if !ok {
		return err.Error()
	}
	name := field.Tag.Get("env")
	want := parseErr.Type.String()
	if parseErr.Type.Kind() == reflect.Int {
		want = "whole number"
	}
	return fmt.Sprintf("%s: %q is not a valid %s", name, vars[name], want)
}

// namedPort is a port and the variable that sets it, for error messages.
type namedPort struct {
	name string
	port int
}

func (c Config) ports() []namedPort {
	return []namedPort{
		{"GATEWAY_PORT", c.GatewayPort},
		{"SERVICE01_PORT", c.Service01Port},
		{"SERVICE02_PORT", c.Service02Port},
		{"RABBITMQ_PORT", c.RabbitMQPort},
		{"RABBITMQ_MANAGEMENT_PORT", c.ManagementPort},
	}
}
