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
	"time"

	"github.com/caarlos0/env/v11"
)

// config is service01's configuration, read from the environment. The names
// and defaults are the ones in .env.example at the root of the repository.
type config struct {
	Port       int    `env:"SERVICE01_PORT" envDefault:"8001"`
	ListenHost string `env:"LISTEN_HOST" envDefault:""`
	LogLevel   string `env:"LOG_LEVEL" envDefault:"info"`

	RabbitHost  string `env:"RABBITMQ_HOST" envDefault:"localhost"`
	RabbitPort  int    `env:"RABBITMQ_PORT" envDefault:"5672"`
	RabbitUser  string `env:"RABBITMQ_DEFAULT_USER" envDefault:"lab"`
	RabbitPass  string `env:"RABBITMQ_DEFAULT_PASS" envDefault:"lab"`
	RabbitVhost string `env:"RABBITMQ_VHOST" envDefault:"/"`

	Exchange           string `env:"RABBITMQ_EXCHANGE" envDefault:"pings"`
	RoutingKey         string `env:"RABBITMQ_ROUTING_KEY" envDefault:"ping.created"`
	Queue              string `env:"RABBITMQ_QUEUE" envDefault:"pings"`
	QueueType          string `env:"RABBITMQ_QUEUE_TYPE" envDefault:"quorum"`
	DeliveryLimit      int    `env:"RABBITMQ_DELIVERY_LIMIT" envDefault:"5"`
	DeadLetterExchange string `env:"RABBITMQ_DEAD_LETTER_EXCHANGE" envDefault:"pings.dlx"`
	DeadLetterQueue    string `env:"RABBITMQ_DEAD_LETTER_QUEUE" envDefault:"pings.dead"`

	ConfirmTimeout  time.Duration `env:"SERVICE01_CONFIRM_TIMEOUT" envDefault:"5s"`
	PublishChannels int           `env:"SERVICE01_PUBLISH_CHANNELS" envDefault:"64"`
	IdempotencyTTL  time.Duration `env:"SERVICE01_IDEMPOTENCY_TTL" envDefault:"24h"`
	IdempotencyKeys int           `env:"SERVICE01_IDEMPOTENCY_KEYS" envDefault:"100000"`
}

// maxPublishChannels is RabbitMQ's default channel_max per connection.
const maxPublishChannels = 2047

// parseConfig reads the configuration through getenv. An empty variable
// counts as unset and takes its default. The error lists every problem, one
// line each, naming the variable and saying what it must be.
func parseConfig(getenv func(string) string) (config, error) {
	// env reads a map; collect the variables the struct names from getenv.
	fields, err := env.GetFieldParams(&config{})
	if err != nil {
		return config{}, err
	}
	environ := make(map[string]string, len(fields))
	for _, f := range fields {
		if v := getenv(f.Key); v != "" {
			environ[f.Key] = v
		}
	}

	var problems []error
	unparsed := make(map[string]bool) // reported already: skip their checks
	cfg, err := env.ParseAsWithOptions[config](env.Options{Environment: environ})
	if err != nil {
		agg, ok := errors.AsType[env.AggregateError](err)
		if !ok {
			return config{}, err
		}
		for _, e := range agg.Errors {
			key, err := describeParseError(e, environ)
			unparsed[key] = true
			problems = append(problems, err)
		}
	}
	problems = append(problems, cfg.validate(unparsed)...)
	if len(problems) > 0 {
		return config{}, fmt.Errorf("invalid configuration:\n%w", errors.Join(problems...))
	}
	return cfg, nil
}

// describeParseError turns env's error about a field into a line naming the
// variable, what it must be and what it was. It returns the variable too.
func describeParseError(err error, environ map[string]string) (string, error) {
	pe, ok := errors.AsType[env.ParseError](err)
	if !ok {
		return "", err
	}
	field, ok := reflect.TypeFor[config]().FieldByName(pe.Name)
	if !ok {
		return "", err
	}
	key := field.Tag.Get("env")
	want := "a whole number"
	if pe.Type == reflect.TypeFor[time.Duration]() {
		want = "a duration such as 5s or 500ms"
	}
	return key, fmt.Errorf("%s: must be %s, got %q", key, want, environ[key])
}

// validate checks what the types alone do not, except for the variables
// in skip.
func (c config) validate(skip map[string]bool) []error {
	var problems []error
	bad := func(key, format string, args ...any) {
		if !skip[key] {
			problems = append(problems, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
		}
	}
	if c.Port < 1 || c.Port > 65535 {
		bad("SERVICE01_PORT", "must be a port between 1 and 65535, got %d", c.Port)
	}
	if _, ok := logLevels[strings.ToLower(c.LogLevel)]; !ok {
		bad("LOG_LEVEL", `must be "debug", "info", "warn" or "error", got %q`, c.LogLevel)
	}
	if c.RabbitHost == "" {
		bad("RABBITMQ_HOST", "must not be empty")
	}
	if c.RabbitPort < 1 || c.RabbitPort > 65535 {
		bad("RABBITMQ_PORT", "must be a port between 1 and 65535, got %d", c.RabbitPort)
	}
	if c.RabbitUser == "" {
		bad("RABBITMQ_DEFAULT_USER", "must not be empty")
	}
	// The routing key may be empty; the names may not (an empty exchange name
	// is the default exchange, an empty queue name asks for a generated one).
	for _, v := range []struct{ key, value string }{
		{"RABBITMQ_EXCHANGE", c.Exchange},
		{"RABBITMQ_QUEUE", c.Queue},
		{"RABBITMQ_DEAD_LETTER_EXCHANGE", c.DeadLetterExchange},
		{"RABBITMQ_DEAD_LETTER_QUEUE", c.DeadLetterQueue},
	} {
		if v.value == "" {
			bad(v.key, "must not be empty")
		}
	}
	if c.QueueType != "quorum" && c.QueueType != "classic" {
		bad("RABBITMQ_QUEUE_TYPE", "must be \"quorum\" or \"classic\", got %q", c.QueueType)
	}
	if c.DeliveryLimit < 1 {
		bad("RABBITMQ_DELIVERY_LIMIT", "must be at least 1, got %d", c.DeliveryLimit)
	}
	if c.ConfirmTimeout <= 0 {
		bad("SERVICE01_CONFIRM_TIMEOUT", "must be more than 0, got %s", c.ConfirmTimeout)
	}
	if c.PublishChannels < 1 || c.PublishChannels > maxPublishChannels {
		bad("SERVICE01_PUBLISH_CHANNELS", "must be between 1 and %d (RabbitMQ's default channel_max), got %d",
			maxPublishChannels, c.PublishChannels)
	}
	if c.IdempotencyTTL <= 0 {
		bad("SERVICE01_IDEMPOTENCY_TTL", "must be more than 0, got %s", c.IdempotencyTTL)
	}
	if c.IdempotencyKeys < 1 {
		bad("SERVICE01_IDEMPOTENCY_KEYS", "must be at least 1, got %d", c.IdempotencyKeys)
	}
	return problems
}

// HTTPAddr is the address the HTTP server listens on.
func (c config) HTTPAddr() string {
	return net.JoinHostPort(c.ListenHost, strconv.Itoa(c.Port))
}

// RabbitAddr is the broker's host:port, for messages (it has no password).
func (c config) RabbitAddr() string {
	return net.JoinHostPort(c.RabbitHost, strconv.Itoa(c.RabbitPort))
}

// AMQPURL is the URL to dial the broker with. net/url escapes the user, the
// password and the vhost (the default vhost "/" becomes "%2F").
func (c config) AMQPURL() string {
	u := url.URL{
		Scheme:  "amqp",
		User:    url.UserPassword(c.RabbitUser, c.RabbitPass),
		Host:    c.RabbitAddr(),
		Path:    "/" + c.RabbitVhost,
		RawPath: "/" + url.PathEscape(c.RabbitVhost),
	}
	return u.String()
}

// logLevels are the values LOG_LEVEL may take, in any case.
var logLevels = map[string]slog.Level{
	"debug": slog.LevelDebug,
	"info":  slog.LevelInfo,
	"warn":  slog.LevelWarn,
	"error": slog.LevelError,
}

// Level is the slog level LOG_LEVEL names.
func (c config) Level() slog.Level { return logLevels[strings.ToLower(c.LogLevel)] }
