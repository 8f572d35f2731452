package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// A second read model of the event log, run with service02 -per-minute:
// how many pings were sent in each minute. Nothing wrote it as the pings
// came; it is built now, from the same log service02's store is rebuilt
// from, and from as far back as the log reaches. Any number of such views
// can be added later, each reading the log at its own pace, and none takes
// anything away from another: that is what a log has and a queue has not.
//
// It reads the log the way replayLog does: a marker appended first, then
// the events from the chosen offset up to it.
func printPerMinute(ctx context.Context, c RabbitMQConfig, from string, stdout io.Writer) error {
	offset, err := streamOffsetSpec(from, time.Now())
	if err != nil {
		return err
	}
	d := dialer{cfg: c}
	conn, _, err := d.dial(ctx)
	if err != nil {
		return fmt.Errorf("connect to RabbitMQ at %s: %w", c.RabbitMQAddr(), err)
	}
	defer conn.CloseDeadline(time.Now().Add(closeTimeout))
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("channel.open: %w", err)
	}
	marker, err := appendMarker(ctx, ch, c.LogStream)
	if err != nil {
		return err
	}
	if err := ch.Qos(
		replayPrefetch,
		0,     // prefetchSize: no byte limit
		false, // global: per consumer
	); err != nil {
		return fmt.Errorf("basic.qos: %w", err)
	}
	events, err := ch.Consume(
		c.LogStream,
		"",    // consumer tag: chosen by the broker
		false, // autoAck: a stream consumer must ack, which grants credit
		false, // exclusive
		false, // noLocal
		false, // noWait
		amqp.Table{"x-stream-offset": offset},
	)
	if err != nil {
		return fmt.Errorf("basic.consume: %w", err)
	}

	pings := map[string]int{} // the read model: minute -> pings
	read, skipped := 0, 0
	firstOffset, lastOffset := int64(-1), int64(-1)
	for {
		var d amqp.Delivery
		var ok bool
		select {
		case d, ok = <-events:
		case <-ctx.Done():
			return ctx.Err()
		}
		if !ok {
			return fmt.Errorf("the broker closed the channel before the marker came")
		}
		if err := d.Ack(false); err != nil {
			return fmt.Errorf("basic.ack: %w", err)
		}
		if d.Type == markerType {
			if d.MessageId == marker {
				break
			}
			continue
		}
		if firstOffset < 0 {
			firstOffset = streamOffset(d)
		}
		lastOffset = streamOffset(d)
		read++
		m, err := decodeMessage(d.Body)
		if err != nil {
			skipped++
			continue
		}
		date, _ := time.Parse(time.RFC3339Nano, m.Date) // decodeMessage checked it
		pings[date.UTC().Format("2006-01-02 15:04")]++
	}

	var b strings.Builder
	fmt.Fprintf(&b, "%-16s  %6s\n", "minute (UTC)", "pings")
	for _, minute := range slices.Sorted(maps.Keys(pings)) {
		fmt.Fprintf(&b, "%-16s  %6d\n", minute, pings[minute])
	}
	if read == 0 {
		fmt.Fprintf(&b, "no events in %s from %s\n", c.LogStream, from)
	} else {
		fmt.Fprintf(&b, "%d events read from %s, offsets %d to %d; %d invalid skipped\n",
			read, c.LogStream, firstOffset, lastOffset, skipped)
	}
	_, err = io.WriteString(stdout, b.String())
	return err
}

// streamOffsetSpec turns -from into an x-stream-offset: "first", the
// oldest event the log holds; an RFC 3339 time; or a duration, that long
// ago. RabbitMQ starts a time at the chunk (a batch of events written
// together) that holds it, so a few events from just before may come too.
func streamOffsetSpec(from string, now time.Time) (any, error) {
	if from == "first" {
		return "first", nil
	}
	if t, err := time.Parse(time.RFC3339, from); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(from); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return nil, fmt.Errorf(`-from must be "first", a time such as 2026-12-02T18:40:00Z, or a duration ago such as 10m; got %q`, from)
}
