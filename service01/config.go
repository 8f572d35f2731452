package main

import (
	"fmt"
	"time"
)

// config is service01's configuration, read from the environment by
// parseConfig (parseconfig.go). The names and defaults are those of
// .env.example; config_test.go checks they agree.
type config struct {
	Port       int    `env:"SERVICE01_PORT" envDefault:"8001"`
	ListenHost string `env:"LISTEN_HOST" envDefault:""`
	LogLevel   string `env:"LOG_LEVEL" envDefault:"info"`

	RabbitMQConfig // the broker, and what to declare on it (rabbitmq.go)

	ConfirmTimeout  time.Duration `env:"SERVICE01_CONFIRM_TIMEOUT" envDefault:"5s"`
	PublishChannels int           `env:"SERVICE01_PUBLISH_CHANNELS" envDefault:"2"`
	MaxInFlight     int           `env:"SERVICE01_MAX_IN_FLIGHT" envDefault:"512"`
	IdempotencyTTL  time.Duration `env:"SERVICE01_IDEMPOTENCY_TTL" envDefault:"24h"`
	IdempotencyKeys int           `env:"SERVICE01_IDEMPOTENCY_KEYS" envDefault:"100000"`
}

// maxPublishChannels is RabbitMQ's default channel_max per connection.
const maxPublishChannels = 2047

// maxInFlight bounds SERVICE01_MAX_IN_FLIGHT: each place reserves room
// for a basic.return on every channel.
const maxInFlight = 65535

// validate checks service01's own values that parsed; parseConfig checks
// the rest.
func (c config) validate() []fieldError {
	var problems []fieldError
	check := func(ok bool, key, format string, args ...any) {
		if !ok {
			problems = append(problems, fieldError{key, fmt.Sprintf(format, args...)})
		}
	}
	check(c.ConfirmTimeout > 0, "SERVICE01_CONFIRM_TIMEOUT", "must be more than 0, got %s", c.ConfirmTimeout)
	check(c.PublishChannels >= 1 && c.PublishChannels <= maxPublishChannels, "SERVICE01_PUBLISH_CHANNELS",
		"must be between 1 and %d (RabbitMQ's default channel_max), got %d", maxPublishChannels, c.PublishChannels)
	check(c.MaxInFlight >= 1 && c.MaxInFlight <= maxInFlight, "SERVICE01_MAX_IN_FLIGHT",
		"must be between 1 and %d, got %d", maxInFlight, c.MaxInFlight)
	check(c.IdempotencyTTL > 0, "SERVICE01_IDEMPOTENCY_TTL", "must be more than 0, got %s", c.IdempotencyTTL)
	check(c.IdempotencyKeys >= 1, "SERVICE01_IDEMPOTENCY_KEYS", "must be at least 1, got %d", c.IdempotencyKeys)
	return problems
}
