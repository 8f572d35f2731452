package main

import (
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"
)

// BenchmarkAcks measures what batching acks is worth: it drains a quorum
// queue of b.N messages with the lab's prefetch, acking each delivery on
// its own (batch 1, as d.Ack(false) would) or in batches of half the
// prefetch (what service02 does), and reports deliveries per second. Only
// the acks differ; nothing is stored. Run it with
//
//	go test -run '^$' -bench Acks -benchtime 20000x ./service02
func BenchmarkAcks(b *testing.B) {
	r := mustRabbit(b)
	const prefetch = 200
	for _, batch := range []int{1, ackBatch(prefetch)} {
		b.Run("batch="+strconv.Itoa(batch), func(b *testing.B) {
			cfg := testTopologyConfig(b, r)
			mustDeclareTopology(b, r, cfg)
			pub := newTestPublisher(b, r, cfg)
			bodies := make([][]byte, 0, 1000)
			for i := range b.N {
				bodies = append(bodies, []byte(fmt.Sprintf(`{"id":"bench-%d","msg":"m","date":"2026-11-22T09:15:02.123456Z"}`, i)))
				if len(bodies) == cap(bodies) || i == b.N-1 {
					if err := pub.publishAll(bodies); err != nil {
						b.Fatal(err)
					}
					bodies = bodies[:0]
				}
			}

			ch, closeCh := mustChannel(b, r)
			defer closeCh()
			if err := ch.Qos(prefetch, 0, false /* global */); err != nil {
				b.Fatal(err)
			}
			deliveries, err := ch.Consume(cfg.Queue, "bench",
				false, // autoAck
				false, // exclusive
				false, // noLocal
				false, // noWait
				nil)
			if err != nil {
				b.Fatal(err)
			}
			acks := newAcker(ch, batch, slog.New(slog.NewTextHandler(io.Discard, nil)))
			b.ResetTimer()
			start := time.Now()
			for range b.N {
				d := <-deliveries
				acks.ack(d.DeliveryTag)
			}
			acks.flush()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "deliveries/s")
		})
	}
}
