package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"reflect"
	"strconv"
	"strings"

	"github.com/caarlos0/env/v11"
)

// config is service02's configuration, read from the environment. The names
// and defaults are those of .env.example; config_test.go checks they agree.
type config struct {
	Port       int    `env:"SERVICE02_PORT" envDefault:"8002"`
	ListenHost string `env:"LISTEN_HOST" envDefault:""`
	LogLevel   string `env:"LOG_LEVEL" envDefault:"info"`

	RabbitMQHost  string `env:"RABBITMQ_HOST" envDefault:"localhost"`
	RabbitMQPort  int    `env:"RABBITMQ_PORT" envDefault:"5672"`
	RabbitMQUser  string `env:"RABBITMQ_DEFAULT_USER" envDefault:"lab"`
	RabbitMQPass  string `env:"RABBITMQ_DEFAULT_PASS" envDefault:"lab"`
	RabbitMQVHost string `env:"RABBITMQ_VHOST" envDefault:"/"`

	Exchange           string `env:"RABBITMQ_EXCHANGE" envDefault:"pings"`
	RoutingKey         string `env:"RABBITMQ_ROUTING_KEY" envDefault:"ping.created"`
	Queue              string `env:"RABBITMQ_QUEUE" envDefault:"pings"`
	QueueType          string `env:"RABBITMQ_QUEUE_TYPE" envDefault:"quorum"`
	DeliveryLimit      int    `env:"RABBITMQ_DELIVERY_LIMIT" envDefault:"5"`
	DeadLetterExchange string `env:"RABBITMQ_DEAD_LETTER_EXCHANGE" envDefault:"pings.dlx"`
	DeadLetterQueue    string `env:"RABBITMQ_DEAD_LETTER_QUEUE" envDefault:"pings.dead"`

	Prefetch      int `env:"SERVICE02_PREFETCH" envDefault:"200"`
	StoreCapacity int `env:"SERVICE02_STORE_CAPACITY" envDefault:"10000"`
}

// parseConfig reads the configuration through getenv. A variable that is
// unset or empty takes its default. Every invalid value is reported, one line
// each, so that a single run shows everything there is to fix.
func parseConfig(getenv func(string) string) (config, error) {
	params, err := env.GetFieldParams(&config{})
	if err != nil {
		return config{}, err
	}
	vars := make(map[string]string, len(params))
	for _, p := range params {
		vars[p.Key] = getenv(p.Key)
	}

	cfg, err := env.ParseAsWithOptions[config](env.Options{Environment: vars})
	var problems []error
	unparsed := make(map[string]bool)
	if agg, ok := errors.AsType[env.AggregateError](err); ok {
		for _, e := range agg.Errors {
			key, problem := describeEnvError(e, vars)
			unparsed[key] = true
			problems = append(problems, problem)
		}
	} else if err != nil {
		return config{}, err
	}
	for _, p := range cfg.validate() {
		if !unparsed[p.key] { // already reported as unparsable
			problems = append(problems, p)
		}
	}
	if len(problems) > 0 {
		return config{}, fmt.Errorf("invalid configuration (.env.example lists every variable):\n%w", errors.Join(problems...))
	}
	return cfg, nil
}

// fieldError is one invalid configuration value.
type fieldError struct {
	key     string
	problem string
}

func (e fieldError) Error() string { return e.key + ": " + e.problem }

// describeEnvError turns one of env's errors, which name the struct field,
// into a line naming the variable.
func describeEnvError(err error, vars map[string]string) (key string, problem error) {
	pe, ok := errors.AsType[env.ParseError](err)
	if !ok {
		return "", err
	}
	field, _ := reflect.TypeFor[config]().FieldByName(pe.Name)
	key = field.Tag.Get("env")
	if pe.Type.Kind() == reflect.Int {
		return key, fieldError{key, fmt.Sprintf("must be a whole number, got %q", vars[key])}
	}
	return key, fieldError{key, fmt.Sprintf("invalid value %q: %v", vars[key], pe.Err)}
}

// validate checks the values that parsed.
func (c config) validate() []fieldError {
	var problems []fieldError
	check := func(ok bool, key, format string, args ...any) {
		if !ok {
			problems = append(problems, fieldError{key, fmt.Sprintf(format, args...)})
		}
	}
	check(c.Port >= 1 && c.Port <= 65535, "SERVICE02_PORT", "must be a port number from 1 to 65535, got %d", c.Port)
	check(c.RabbitMQPort >= 1 && c.RabbitMQPort <= 65535, "RABBITMQ_PORT", "must be a port number from 1 to 65535, got %d", c.RabbitMQPort)
	_, levelOK := logLevels[strings.ToLower(c.LogLevel)]
	check(levelOK, "LOG_LEVEL", `must be "debug", "info", "warn" or "error", got %q`, c.LogLevel)

	// AMQP names are short strings (at most 255 bytes), and RabbitMQ refuses
	// to declare an exchange or queue whose name starts with "amq.".
	for _, n := range []struct{ key, name string }{
		{"RABBITMQ_EXCHANGE", c.Exchange},
		{"RABBITMQ_DEAD_LETTER_EXCHANGE", c.DeadLetterExchange},
		{"RABBITMQ_QUEUE", c.Queue},
		{"RABBITMQ_DEAD_LETTER_QUEUE", c.DeadLetterQueue},
	} {
		check(len(n.name) <= 255, n.key, "must be at most 255 bytes long, got %d", len(n.name))
		check(!strings.HasPrefix(n.name, "amq."), n.key, `must not start with "amq." (RabbitMQ reserves those names), got %q`, n.name)
	}
	check(len(c.RoutingKey) <= 255, "RABBITMQ_ROUTING_KEY", "must be at most 255 bytes long, got %d", len(c.RoutingKey))
	check(c.Exchange != c.DeadLetterExchange, "RABBITMQ_DEAD_LETTER_EXCHANGE", "must differ from RABBITMQ_EXCHANGE (both are %q)", c.Exchange)
	check(c.Queue != c.DeadLetterQueue, "RABBITMQ_DEAD_LETTER_QUEUE", "must differ from RABBITMQ_QUEUE (both are %q)", c.Queue)
	check(c.QueueType == "quorum" || c.QueueType == "classic", "RABBITMQ_QUEUE_TYPE", `must be "quorum" or "classic", got %q`, c.QueueType)
	check(c.DeliveryLimit >= 1, "RABBITMQ_DELIVERY_LIMIT", "must be at least 1, got %d", c.DeliveryLimit)

	// AMQP's basic.qos carries the prefetch count in 16 bits; 0 would mean
	// "no limit", which lets a slow consumer buffer the whole queue.
	check(c.Prefetch >= 1 && c.Prefetch <= 65535, "SERVICE02_PREFETCH", "must be from 1 to 65535, got %d", c.Prefetch)
	check(c.StoreCapacity >= 1, "SERVICE02_STORE_CAPACITY", "must be at least 1, got %d", c.StoreCapacity)
	return problems
}

var logLevels = map[string]slog.Level{
	"debug": slog.LevelDebug,
	"info":  slog.LevelInfo,
	"warn":  slog.LevelWarn,
	"error": slog.LevelError,
}

// Level is the slog level LOG_LEVEL names.
func (c config) Level() slog.Level { return logLevels[strings.ToLower(c.LogLevel)] }

// HTTPAddr is the address the HTTP server listens on.
func (c config) HTTPAddr() string {
	return net.JoinHostPort(c.ListenHost, strconv.Itoa(c.Port))
}

// BrokerAddr is the broker's host:port, for messages (it holds no secret).
func (c config) BrokerAddr() string {
	return net.JoinHostPort(c.RabbitMQHost, strconv.Itoa(c.RabbitMQPort))
}

// AMQPURL is the broker URL with the login and the virtual host escaped, so
// that a password such as "p@ss/word" or the vhost "/" survive the trip.
func (c config) AMQPURL() string {
	u := url.URL{
		Scheme:  "amqp",
		User:    url.UserPassword(c.RabbitMQUser, c.RabbitMQPass),
		Host:    c.BrokerAddr(),
		Path:    "/" + c.RabbitMQVHost,
		RawPath: "/" + url.PathEscape(c.RabbitMQVHost),
	}
	return u.String()
}

// topology is the part of the configuration that names the broker objects.
func (c config) topology() topology {
	return topology{
		Exchange:           c.Exchange,
		RoutingKey:         c.RoutingKey,
		Queue:              c.Queue,
		QueueType:          c.QueueType,
		DeliveryLimit:      c.DeliveryLimit,
		DeadLetterExchange: c.DeadLetterExchange,
		DeadLetterQueue:    c.DeadLetterQueue,
	}
}
