package main

import "fmt"

// config is service02's configuration, read from the environment by
// parseConfig (parseconfig.go). The names and defaults are those of
// .env.example; config_test.go checks they agree.
type config struct {
	Port       int    `env:"SERVICE02_PORT" envDefault:"8002"`
	ListenHost string `env:"LISTEN_HOST" envDefault:""`
	LogLevel   string `env:"LOG_LEVEL" envDefault:"info"`

	RabbitMQConfig // the broker, and what to declare on it (rabbitmq.go)

	Prefetch      int `env:"SERVICE02_PREFETCH" envDefault:"200"`
	StoreCapacity int `env:"SERVICE02_STORE_CAPACITY" envDefault:"10000"`
	// Replay rebuilds the store from the event log at start (replay.go).
	Replay bool `env:"SERVICE02_REPLAY" envDefault:"false"`
}

// validate checks service02's own values that parsed; parseConfig checks
// the rest.
func (c config) validate() []fieldError {
	var problems []fieldError
	check := func(ok bool, key, format string, args ...any) {
		if !ok {
			problems = append(problems, fieldError{key, fmt.Sprintf(format, args...)})
		}
	}
	// AMQP's basic.qos carries the prefetch count in 16 bits; 0 would mean
	// "no limit", which lets a slow consumer buffer the whole queue.
	check(c.Prefetch >= 1 && c.Prefetch <= 65535, "SERVICE02_PREFETCH", "must be from 1 to 65535, got %d", c.Prefetch)
	check(c.StoreCapacity >= 1, "SERVICE02_STORE_CAPACITY", "must be at least 1, got %d", c.StoreCapacity)
	return problems
}
