package main

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// RabbitMQConfig is the configuration both services share, with the same
// variables and defaults: where the broker is, and the names of what both
// declare on it (topology.go). Each service's config embeds it.
type RabbitMQConfig struct {
	RabbitMQHost string `env:"RABBITMQ_HOST" envDefault:"localhost"`
	RabbitMQPort int    `env:"RABBITMQ_PORT" envDefault:"5672"`
	// A cluster: its nodes, host or host:port each (the port defaults to
	// RABBITMQ_PORT), separated by commas. When set it replaces
	// RABBITMQ_HOST; dial.go tries the nodes in turn.
	RabbitMQAddresses []string `env:"RABBITMQ_ADDRESSES" envSeparator:","`
	RabbitMQUser      string   `env:"RABBITMQ_DEFAULT_USER" envDefault:"lab"`
	RabbitMQPass      string   `env:"RABBITMQ_DEFAULT_PASS" envDefault:"lab"`
	RabbitMQVHost     string   `env:"RABBITMQ_VHOST" envDefault:"/"`

	Exchange           string `env:"RABBITMQ_EXCHANGE" envDefault:"pings"`
	RoutingKey         string `env:"RABBITMQ_ROUTING_KEY" envDefault:"ping.created"`
	Queue              string `env:"RABBITMQ_QUEUE" envDefault:"pings"`
	QueueType          string `env:"RABBITMQ_QUEUE_TYPE" envDefault:"quorum"`
	DeliveryLimit      int    `env:"RABBITMQ_DELIVERY_LIMIT" envDefault:"5"`
	DeadLetterExchange string `env:"RABBITMQ_DEAD_LETTER_EXCHANGE" envDefault:"pings.dlx"`
	DeadLetterQueue    string `env:"RABBITMQ_DEAD_LETTER_QUEUE" envDefault:"pings.dead"`

	// The event log: a stream bound to the exchange like the queue, which
	// keeps every ping until retention removes it (topology.go).
	LogStream       string `env:"RABBITMQ_LOG_STREAM" envDefault:"pings.log"`
	LogMaxAge       string `env:"RABBITMQ_LOG_MAX_AGE" envDefault:"7D"`
	LogMaxBytes     int64  `env:"RABBITMQ_LOG_MAX_BYTES" envDefault:"100000000"`
	LogSegmentBytes int64  `env:"RABBITMQ_LOG_SEGMENT_BYTES" envDefault:"10000000"`
}

// maxAgePattern is what RabbitMQ accepts as a stream's x-max-age: a whole
// number and a unit, Y(ears), M(onths), D(ays), h(ours), m(inutes) or
// s(econds).
var maxAgePattern = regexp.MustCompile(`^[1-9][0-9]{0,8}[YMDhms]$`)

// maxSegmentBytes is the largest segment RabbitMQ accepts for a stream.
const maxSegmentBytes = 3_000_000_000

// validate checks the broker's values that parsed.
func (c RabbitMQConfig) validate() []fieldError {
	var problems []fieldError
	check := func(ok bool, key, format string, args ...any) {
		if !ok {
			problems = append(problems, fieldError{key, fmt.Sprintf(format, args...)})
		}
	}
	check(c.RabbitMQHost != "", "RABBITMQ_HOST", "must not be empty")
	check(c.RabbitMQPort >= 1 && c.RabbitMQPort <= 65535, "RABBITMQ_PORT", "must be a port number from 1 to 65535, got %d", c.RabbitMQPort)
	check(c.RabbitMQUser != "", "RABBITMQ_DEFAULT_USER", "must not be empty")
	for _, a := range c.RabbitMQAddresses {
		_, port, err := splitAddress(a, c.RabbitMQPort)
		check(err == nil && port >= 1 && port <= 65535, "RABBITMQ_ADDRESSES",
			"must be the nodes' addresses, host or host:port each, separated by commas, such as rabbitmq-1,rabbitmq-2,rabbitmq-3 or 127.0.0.1:5672,127.0.0.1:5673; %q is not one", a)
	}

	// AMQP names are short strings (at most 255 bytes). An empty name means
	// the default exchange, or a queue named by the broker; and RabbitMQ
	// refuses to declare an exchange or queue whose name starts with "amq.".
	// The routing key may be empty.
	for _, n := range []struct{ key, name string }{
		{"RABBITMQ_EXCHANGE", c.Exchange},
		{"RABBITMQ_DEAD_LETTER_EXCHANGE", c.DeadLetterExchange},
		{"RABBITMQ_QUEUE", c.Queue},
		{"RABBITMQ_DEAD_LETTER_QUEUE", c.DeadLetterQueue},
		{"RABBITMQ_LOG_STREAM", c.LogStream},
	} {
		check(n.name != "", n.key, "must not be empty")
		check(len(n.name) <= 255, n.key, "must be at most 255 bytes long, got %d", len(n.name))
		check(!strings.HasPrefix(n.name, "amq."), n.key, `must not start with "amq." (RabbitMQ reserves those names), got %q`, n.name)
	}
	check(len(c.RoutingKey) <= 255, "RABBITMQ_ROUTING_KEY", "must be at most 255 bytes long, got %d", len(c.RoutingKey))
	check(c.Exchange != c.DeadLetterExchange, "RABBITMQ_DEAD_LETTER_EXCHANGE", "must differ from RABBITMQ_EXCHANGE (both are %q)", c.Exchange)
	check(c.Queue != c.DeadLetterQueue, "RABBITMQ_DEAD_LETTER_QUEUE", "must differ from RABBITMQ_QUEUE (both are %q)", c.Queue)
	check(c.QueueType == "quorum" || c.QueueType == "classic", "RABBITMQ_QUEUE_TYPE", `must be "quorum" or "classic", got %q`, c.QueueType)
	check(c.DeliveryLimit >= 1, "RABBITMQ_DELIVERY_LIMIT", "must be at least 1, got %d", c.DeliveryLimit)
	check(c.LogStream != c.Queue && c.LogStream != c.DeadLetterQueue, "RABBITMQ_LOG_STREAM",
		"must differ from RABBITMQ_QUEUE and RABBITMQ_DEAD_LETTER_QUEUE, got %q", c.LogStream)
	check(maxAgePattern.MatchString(c.LogMaxAge), "RABBITMQ_LOG_MAX_AGE",
		`must be a whole number and a unit: Y, M, D, h, m or s (years to seconds), such as 7D or 12h; got %q`, c.LogMaxAge)
	check(c.LogMaxBytes >= 1, "RABBITMQ_LOG_MAX_BYTES", "must be at least 1, got %d", c.LogMaxBytes)
	// Retention removes whole segments, and never the one being written:
	// a segment as large as the whole log would never leave room to remove
	// anything.
	check(c.LogSegmentBytes >= 1 && c.LogSegmentBytes <= maxSegmentBytes && (c.LogMaxBytes < 1 || c.LogSegmentBytes <= c.LogMaxBytes), "RABBITMQ_LOG_SEGMENT_BYTES",
		"must be from 1 to RABBITMQ_LOG_MAX_BYTES (%d) and at most %d, got %d", c.LogMaxBytes, int64(maxSegmentBytes), c.LogSegmentBytes)
	return problems
}

// RabbitMQAddrs are the host:port of each of the broker's nodes, in the
// order dial tries them: RABBITMQ_ADDRESSES, or else RABBITMQ_HOST and
// RABBITMQ_PORT.
func (c RabbitMQConfig) RabbitMQAddrs() []string {
	if len(c.RabbitMQAddresses) == 0 {
		return []string{net.JoinHostPort(c.RabbitMQHost, strconv.Itoa(c.RabbitMQPort))}
	}
	addrs := make([]string, 0, len(c.RabbitMQAddresses))
	for _, a := range c.RabbitMQAddresses {
		host, port, _ := splitAddress(a, c.RabbitMQPort)
		addrs = append(addrs, net.JoinHostPort(host, strconv.Itoa(port)))
	}
	return addrs
}

// RabbitMQAddr is the broker's host:port, or its nodes' separated by
// commas, for messages (it holds no secret).
func (c RabbitMQConfig) RabbitMQAddr() string {
	return strings.Join(c.RabbitMQAddrs(), ",")
}

// splitAddress splits one of RABBITMQ_ADDRESSES into a host and a port,
// which is defaultPort when the address has none.
func splitAddress(a string, defaultPort int) (host string, port int, err error) {
	a = strings.TrimSpace(a)
	host, p, err := net.SplitHostPort(a)
	if err != nil {
		if strings.Contains(a, ":") {
			return "", 0, err
		}
		host, port = a, defaultPort // no port
	} else if port, err = strconv.Atoi(p); err != nil {
		return "", 0, err
	}
	if host == "" || strings.ContainsAny(host, "/@ \t") {
		return "", 0, fmt.Errorf("not a host: %q", host)
	}
	return host, port, nil
}

// AMQPURL is the URL of the node at addr (host:port) with the login and
// the virtual host escaped, so that a password such as "p@ss/word" or the
// vhost "/" (which becomes "%2F") survive the trip.
func (c RabbitMQConfig) AMQPURL(addr string) string {
	u := url.URL{
		Scheme:  "amqp",
		User:    url.UserPassword(c.RabbitMQUser, c.RabbitMQPass),
		Host:    addr,
		Path:    "/" + c.RabbitMQVHost,
		RawPath: "/" + url.PathEscape(c.RabbitMQVHost),
	}
	return u.String()
}
