package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// parseConfig reads the configuration through getenv. A variable that is
// unset or empty takes its default. Every invalid value is reported, one line
// each naming the variable and saying what it must be, so that a single run
// shows everything there is to fix.
func parseConfig(getenv func(string) string) (config, error) {
	// env reads a map: collect the variables the struct names from getenv.
	params, err := env.GetFieldParams(&config{})
	if err != nil {
		return config{}, err
	}
	vars := make(map[string]string, len(params))
	for _, p := range params {
		if v := getenv(p.Key); v != "" {
			vars[p.Key] = v
		}
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
	checks := append(cfg.validate(), cfg.RabbitMQConfig.validate()...)
	if cfg.Port < 1 || cfg.Port > 65535 {
		checks = append(checks, fieldError{"SERVICE01_PORT", fmt.Sprintf("must be a port number from 1 to 65535, got %d", cfg.Port)})
	}
	if _, ok := logLevels[strings.ToLower(cfg.LogLevel)]; !ok {
		checks = append(checks, fieldError{"LOG_LEVEL", fmt.Sprintf(`must be "debug", "info", "warn" or "error", got %q`, cfg.LogLevel)})
	}
	for _, p := range checks {
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
	switch {
	case pe.Type == reflect.TypeFor[time.Duration]():
		return key, fieldError{key, fmt.Sprintf("must be a duration such as 5s or 500ms, got %q", vars[key])}
	case pe.Type.Kind() == reflect.Int:
		return key, fieldError{key, fmt.Sprintf("must be a whole number, got %q", vars[key])}
	}
	return key, fieldError{key, fmt.Sprintf("invalid value %q: %v", vars[key], pe.Err)}
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

// HTTPAddr is the address the HTTP server listens on.
func (c config) HTTPAddr() string {
	return net.JoinHostPort(c.ListenHost, strconv.Itoa(c.Port))
}
