package fault

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"pingpong/lab/runner"
)

// The lab's queues (the defaults in .env.example, which the labs the suite
// starts keep).
const (
	exchange        = "pings"
	routingKey      = "ping.created"
	queue           = "pings"
	deadLetterQueue = "pings.dead"
)

// Env is the extra environment of a lab the suite runs against: a store
// large enough that service02 evicts nothing the suite sends, and service02
// rebuilding its store from the event log when it restarts, so that a
// restart must lose nothing either.
var Env = []string{"SERVICE02_STORE_CAPACITY=500000", "SERVICE02_REPLAY=true"}

// Timing of a scenario. None is asserted on: they shape the load.
const (
	warmUp       = 2 * time.Second  // load before the fault
	tail         = 2 * time.Second  // load after the first 202 that follows the fault
	recoverLimit = 60 * time.Second // the longest the load waits for that 202
	settleLimit  = 90 * time.Second // the longest the suite waits for the queue to drain
)

// Scenario is one fault, injected under load.
type Scenario struct {
	Name  string // short, for the command line and subtests
	Title string // what happens, for the table
	// inject causes the fault and returns when it is over: the part
	// restarted, the alarm cleared.
	inject func(ctx context.Context, s *Suite, f *faultRun) error
	// check adds the scenario's own promises to r, if it has any.
	check func(ctx context.Context, s *Suite, f *faultRun, pings []Ping, r *Result)
	// cluster: the scenario runs on a lab of three broker nodes.
	cluster bool
	// noRetry, when not empty, says why the pings without a 202 are not
	// sent again after the fault.
	noRetry string
}

// faultRun is the state of one scenario's run.
type faultRun struct {
	poisoned int // messages published straight to the queue, to be dead-lettered
	deadAt0  int // the dead-letter queue's length before
	// forgetBefore: 202s sent before it may be gone from /pong without
	// being lost (the retention scenario); zero for every other scenario.
	forgetBefore time.Time
	smallLogAt   time.Time // when service02 started on the small log
	logged       []string  // msgs the small log held from before the restart up to the replay's marker
	killed       string    // the node the leader-kill scenario killed, or partition cut off
	cutAt        time.Time // when partition cut it off
	healedAt     time.Time // and healed the cut
}

// Scenarios are the faults of the suite, in the order it runs them.
func Scenarios() []Scenario {
	restart := func(part string, kill bool, down time.Duration) func(context.Context, *Suite, *faultRun) error {
		return func(ctx context.Context, s *Suite, f *faultRun) error {
			var err error
			if kill {
				err = s.Lab.KillPart(part)
			} else {
				err = s.Lab.StopPart(part)
			}
			if err != nil {
				return err
			}
			if err := waitCtx(ctx, down); err != nil {
				return err
			}
			return s.Lab.StartPart(ctx, part)
		}
	}
	return []Scenario{
		{Name: "broker-restart", Title: "broker graceful restart",
			inject: restart("rabbitmq", false, 0)},
		{Name: "broker-kill", Title: "broker kill -9, start",
			inject: restart("rabbitmq", true, 0)},
		// service02 replays the event log when it starts again: every
		// ping must be in /pong afterwards, those it had stored before it
		// died included.
		{Name: "service02-kill", Title: "service02 kill -9, 3 s down, replays the log",
			inject: restart("service02", true, 3*time.Second)},
		{Name: "service02-term", Title: "service02 SIGTERM, 3 s down, replays the log",
			inject: restart("service02", false, 3*time.Second)},
		{Name: "service01-kill", Title: "service01 kill -9, 2 s down",
			inject:  restart("service01", true, 2*time.Second),
			noRetry: "service01 forgets its Idempotency-Keys when it restarts, so a retry of a ping whose message was confirmed just before the crash (its client got a 502) is a new message, and would be stored twice"},
		{Name: "service01-term", Title: "service01 SIGTERM, 2 s down",
			inject: restart("service01", false, 2*time.Second)},
		{Name: "memory-alarm", Title: "broker memory alarm, 10 s",
			inject: memoryAlarm, check: checkMemoryAlarm},
		{Name: "poison", Title: "poison messages, then service02 replays them",
			inject: poison, check: checkPoison},
		{Name: "gateway-reload", Title: "nginx -s reload, 3 times",
			inject: reloadGateway, check: checkNoErrors},
		{Name: "retention", Title: "a small event log, service02 restarts",
			inject: smallLog, check: checkRetention},
	}
}

// smallLogEnv points service02 at an event log of its own whose retention
// keeps about 400 kB, in segments of 40 kB: at the suite's load, the last
// five to ten seconds of pings, time enough to read the log after a
// restart before retention moves past what the replay read. service02 declares it, and binds it to the
// exchange, when it starts.
var smallLogEnv = []string{
	"RABBITMQ_LOG_STREAM=" + smallLogStream,
	"RABBITMQ_LOG_MAX_BYTES=400000",
	"RABBITMQ_LOG_SEGMENT_BYTES=40000",
}

// smallLogStream is the stream of the retention scenario.
const smallLogStream = "pings.small-log"

// smallLog restarts service02 on a small event log, lets the load run
// until retention has removed the log's first segments, then restarts
// service02 again: it replays what the log still holds, and nothing else.
func smallLog(ctx context.Context, s *Suite, f *faultRun) error {
	if err := s.Lab.StopPart("service02"); err != nil {
		return err
	}
	if err := s.Lab.StartPartWith(ctx, "service02", smallLogEnv); err != nil {
		return err
	}
	f.smallLogAt = time.Now() // service02 has bound the log by now
	// At 150 pings a second, 400 kB fill up in five to ten seconds, and a
	// removed segment shows as a first offset above 0.
	deadline := time.Now().Add(30 * time.Second)
	for {
		first, err := firstOffset(ctx, s.Lab.AMQPURL(), smallLogStream)
		if err != nil {
			return err
		}
		if first > 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("retention removed nothing from %s within 30 s", smallLogStream)
		}
		if err := waitCtx(ctx, 500*time.Millisecond); err != nil {
			return err
		}
	}
	// Read the log from its oldest event on, and keep reading while
	// service02 restarts, up to the marker its replay appends (the marker
	// of its first start, at the log's first offsets, is gone by now). A
	// reader that started after the restart could find the marker gone
	// too: on a busy machine service02 takes longer to start than
	// retention takes to remove a segment.
	read := readToMarker(ctx, s.Lab.AMQPURL(), smallLogStream)
	if err := s.Lab.StopPart("service02"); err != nil {
		return err
	}
	f.forgetBefore = time.Now()
	if err := s.Lab.StartPart(ctx, "service02"); err != nil {
		return err
	}
	logged := <-read
	f.logged = logged.msgs
	return logged.err
}

// checkRetention wants retention to have taken some of the pings sent
// since the small log was created (those before it were never in it),
// every ping the log still held when the replay read it to be in /pong,
// none sent after service02's last start to be missing (classify counts
// those as lost), and service02 back on the lab's own log afterwards.
func checkRetention(ctx context.Context, s *Suite, f *faultRun, pings []Ping, r *Result) {
	stored, err := ReadPong(ctx, s.Lab.GatewayURL())
	if err != nil {
		r.Problems = append(r.Problems, fmt.Sprintf("reading /pong: %v", err))
	} else {
		in := make(map[string]bool, len(stored))
		for _, m := range stored {
			in[m.Msg] = true
		}
		removed, never := 0, 0
		for _, p := range pings {
			if p.Status != http.StatusAccepted || in[p.Msg] || !p.Sent.Before(f.forgetBefore) {
				continue
			}
			if p.Sent.Before(f.smallLogAt) {
				never++
			} else {
				removed++
			}
		}
		if removed == 0 {
			r.Problems = append(r.Problems, "every ping sent since the small log was created is in /pong: retention removed nothing")
		}
		held, missed := retainedSuffix(f.logged, in)
		if len(missed) > 0 || held == 0 {
			r.Problems = append(r.Problems, fmt.Sprintf("the replay stored %d pings of the log and missed %d it still held, after the oldest it stored: %v", held, len(missed), missed[:min(3, len(missed))]))
		}
		r.Notes = append(r.Notes, fmt.Sprintf("the replay stored all %d pings the small log held; gone, as retention says: %d it had removed, and %d sent before it existed", held, removed, never))
	}
	// Back to the lab's own log and retention (the defaults of
	// .env.example): service02 replays it, every ping of the run included.
	if err := s.Lab.StopPart("service02"); err != nil {
		r.Problems = append(r.Problems, fmt.Sprintf("stop service02: %v", err))
		return
	}
	if err := s.Lab.StartPartWith(ctx, "service02", []string{
		"RABBITMQ_LOG_STREAM=pings.log", "RABBITMQ_LOG_MAX_BYTES=100000000", "RABBITMQ_LOG_SEGMENT_BYTES=10000000",
	}); err != nil {
		r.Problems = append(r.Problems, fmt.Sprintf("start service02 on its own log again: %v", err))
	}
}

// retainedSuffix splits the pings the log held (in log order) at the
// oldest one in /pong. Retention removes the oldest segments, so the pings
// gone from /pong must all come before it: the replay read from there to
// its marker, and stored every ping it met. It returns how many are in
// /pong from there on, and the msg of each that is not.
func retainedSuffix(logged []string, in map[string]bool) (held int, missed []string) {
	i := slices.IndexFunc(logged, func(msg string) bool { return in[msg] })
	if i < 0 {
		return 0, nil
	}
	for _, msg := range logged[i:] {
		if in[msg] {
			held++
		} else {
			missed = append(missed, msg)
		}
	}
	return held, missed
}

// logRead is what readToMarker read: the msg of every ping, in log order.
type logRead struct {
	msgs []string
	err  error
}

// readToMarker reads the stream from the oldest event it holds to the first
// replay marker, in the background, and sends what it read once.
func readToMarker(ctx context.Context, url, stream string) <-chan logRead {
	done := make(chan logRead, 1)
	conn, deliveries, err := readFromFirst(url, stream, 500)
	if err != nil {
		done <- logRead{err: err}
		return done
	}
	go func() {
		defer conn.Close()
		var r logRead
		defer func() { done <- r }()
		// Time enough for service02 to stop and start again.
		timeout := time.After(2 * time.Minute)
		for {
			select {
			case d, ok := <-deliveries:
				if !ok {
					r.err = fmt.Errorf("%s: the channel closed before a marker came", stream)
					return
				}
				if r.err = d.Ack(false); r.err != nil || d.Type == "log.marker" {
					return
				}
				var ping struct {
					Msg string `json:"msg"`
				}
				if json.Unmarshal(d.Body, &ping) == nil && ping.Msg != "" {
					r.msgs = append(r.msgs, ping.Msg)
				}
			case <-timeout:
				r.err = fmt.Errorf("%s: no marker within 2 minutes", stream)
				return
			case <-ctx.Done():
				r.err = ctx.Err()
				return
			}
		}
	}()
	return done
}

// readFromFirst connects and consumes the stream from the oldest event it
// holds, prefetch events ahead of the acks; closing conn stops it.
func readFromFirst(url, stream string, prefetch int) (*amqp.Connection, <-chan amqp.Delivery, error) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return nil, nil, err
	}
	ch, err := conn.Channel()
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("channel.open: %w", err)
	}
	if err := ch.Qos(prefetch, 0, false /* global */); err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("basic.qos: %w", err)
	}
	deliveries, err := ch.Consume(stream, "",
		false, // autoAck: a stream consumer must ack
		false, // exclusive
		false, // noLocal
		false, // noWait
		amqp.Table{"x-stream-offset": "first"})
	if err != nil {
		conn.Close()
		return nil, nil, fmt.Errorf("basic.consume: %w", err)
	}
	return conn, deliveries, nil
}

// firstOffset is the offset of the oldest event the stream still holds.
func firstOffset(ctx context.Context, url, stream string) (int64, error) {
	conn, deliveries, err := readFromFirst(url, stream, 1)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	select {
	case d := <-deliveries:
		switch v := d.Headers["x-stream-offset"].(type) {
		case int64:
			return v, nil
		case int32:
			return int64(v), nil
		}
		return 0, fmt.Errorf("%s: a delivery without x-stream-offset", stream)
	case <-time.After(10 * time.Second):
		return 0, fmt.Errorf("%s: nothing to read within 10 s", stream)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// memoryAlarm sets the broker's memory high watermark to 0, which raises
// the memory alarm at once, and restores the configured 0.4 after 10 s.
func memoryAlarm(ctx context.Context, s *Suite, f *faultRun) error {
	if _, err := s.Lab.Ctl(ctx, "set_vm_memory_high_watermark", "0"); err != nil {
		return err
	}
	waitErr := waitCtx(ctx, 10*time.Second)
	// Restore even when cancelled: a lab left in alarm blocks everything.
	_, err := s.Lab.Ctl(context.WithoutCancel(ctx), "set_vm_memory_high_watermark", "0.4")
	return errors.Join(waitErr, err)
}

// checkMemoryAlarm wants every failure to be service01's 503, which it
// answers within its confirm timeout, and none a gateway timeout or no
// answer (a hang); and at least one, or the alarm did not happen.
func checkMemoryAlarm(_ context.Context, _ *Suite, _ *faultRun, pings []Ping, r *Result) {
	// The broker tells a connection it is blocked (connection.blocked)
	// when the connection next publishes: those first messages wait for
	// their confirm until the timeout; every later request is refused at
	// once, without publishing.
	var slowest time.Duration
	fast := 0
	for _, p := range pings {
		if p.Status == http.StatusServiceUnavailable {
			took := p.Answered.Sub(p.Sent)
			slowest = max(slowest, took)
			if took < time.Second {
				fast++
			}
		}
	}
	r.Notes = append(r.Notes, fmt.Sprintf("%d of the 503s came within a second; the slowest took %s (SERVICE01_CONFIRM_TIMEOUT is 5s)",
		fast, slowest.Round(time.Millisecond)))
	if r.Failed[http.StatusServiceUnavailable] == 0 {
		r.Problems = append(r.Problems, "no 503 during the alarm: did the alarm happen?")
	}
	for status, n := range r.Failed {
		if status != http.StatusServiceUnavailable {
			r.Problems = append(r.Problems, fmt.Sprintf("%d answers with status %d (0: none) during the alarm; every failure must be a 503 from service01", n, status))
		}
	}
}

// poison publishes invalid messages straight to the queue, through the
// default exchange, as a broken or hostile producer would: not JSON, JSON
// without the fields, and a 1 MiB body. Five of each, a second apart.
func poison(ctx context.Context, s *Suite, f *faultRun) error {
	dead, err := s.queueLength(ctx, deadLetterQueue)
	if err != nil {
		return err
	}
	f.deadAt0 = dead

	conn, err := amqp.Dial(s.Lab.AMQPURL())
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("channel.open: %w", err)
	}
	if err := ch.Confirm(false /* noWait */); err != nil {
		return fmt.Errorf("confirm.select: %w", err)
	}
	bodies := [][]byte{
		[]byte("this is not JSON"),
		[]byte(`{"msg":"a message without its id, date and request_id"}`),
		bytes.Repeat([]byte("x"), 1<<20),
	}
	for round := range 5 {
		if round > 0 {
			if err := waitCtx(ctx, time.Second); err != nil {
				return err
			}
		}
		for _, body := range bodies {
			confirm, err := ch.PublishWithDeferredConfirmWithContext(ctx,
				exchange,   // to the queue and the event log, as a ping goes
				routingKey, // routing key
				true,       // mandatory
				false,      // immediate
				amqp.Publishing{ContentType: "application/json", DeliveryMode: amqp.Persistent, Body: body},
			)
			if err != nil {
				return fmt.Errorf("basic.publish: %w", err)
			}
			if ok, err := confirm.WaitContext(ctx); err != nil || !ok {
				return fmt.Errorf("poison message not confirmed: %v", err)
			}
			f.poisoned++
		}
	}
	// The queue dead-letters them; the log keeps them. A service02 that
	// starts again meets them on replay, and must skip each and store
	// every ping.
	if err := s.Lab.StopPart("service02"); err != nil {
		return err
	}
	return s.Lab.StartPart(ctx, "service02")
}

// checkPoison wants every poison message in the dead-letter queue, and
// skipped by the replay of the restarted service02.
func checkPoison(ctx context.Context, s *Suite, f *faultRun, _ []Ping, r *Result) {
	skipped, err := metric(ctx, s.Lab.ServiceURL("service02"), "service02_log_events_skipped_total")
	switch {
	case err != nil:
		r.Problems = append(r.Problems, fmt.Sprintf("reading service02's metrics: %v", err))
	case skipped != f.poisoned:
		r.Problems = append(r.Problems, fmt.Sprintf("the replay skipped %d invalid events, want the %d poison messages", skipped, f.poisoned))
	default:
		r.Notes = append(r.Notes, fmt.Sprintf("the replay skipped all %d", skipped))
	}

	want := f.deadAt0 + f.poisoned
	// The management API's counts lag by up to its statistics interval (5 s).
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := s.queueLength(ctx, deadLetterQueue)
		if err == nil && n == want {
			r.Notes = append(r.Notes, fmt.Sprintf("%d poison messages published, all %d in %s", f.poisoned, f.poisoned, deadLetterQueue))
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			r.Problems = append(r.Problems, fmt.Sprintf("%s holds %d messages (err %v), want %d: %d before and %d poison messages", deadLetterQueue, n, err, want, f.deadAt0, f.poisoned))
			return
		}
		waitCtx(ctx, 500*time.Millisecond)
	}
}

// reloadGateway reloads nginx three times, a second apart.
func reloadGateway(ctx context.Context, s *Suite, f *faultRun) error {
	for i := range 3 {
		if i > 0 {
			if err := waitCtx(ctx, time.Second); err != nil {
				return err
			}
		}
		if err := s.Lab.ReloadGateway(); err != nil {
			return err
		}
	}
	return nil
}

// checkNoErrors wants every request answered 202.
func checkNoErrors(_ context.Context, _ *Suite, _ *faultRun, _ []Ping, r *Result) {
	if len(r.Failed) > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("non-2xx answers %s; a reload must not fail any request", r.FailedString()))
	}
}

// Suite runs scenarios against one lab, one after the other.
type Suite struct {
	Lab *runner.Lab
	Log io.Writer // progress, one line per step; nil for none
	// Rate is the load's pings per second; 0 for the default (loadRate).
	Rate int

	run  string          // tells this run's msgs from any other's
	ours map[string]bool // every msg this run sent
}

// NewSuite returns a suite for a running lab.
func NewSuite(l *runner.Lab, log io.Writer) *Suite {
	if log == nil {
		log = io.Discard
	}
	var b [4]byte
	rand.Read(b[:])
	return &Suite{Lab: l, Log: log, run: hex.EncodeToString(b[:]), ours: map[string]bool{}}
}

func (s *Suite) logf(format string, args ...any) {
	fmt.Fprintf(s.Log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// Run runs one scenario: load, fault, load until a 202 comes again, drain,
// classify.
func (s *Suite) Run(ctx context.Context, sc Scenario) Result {
	r := Result{Scenario: sc.Title, Recovery: -1}
	gateway := s.Lab.GatewayURL()
	load := StartLoad(gateway, fmt.Sprintf("fault-%s-%s", s.run, sc.Name), s.Rate)
	f := &faultRun{}

	s.logf("%s: load started", sc.Name)
	err := waitCtx(ctx, warmUp)
	if err == nil {
		s.logf("%s: injecting the fault", sc.Name)
		err = sc.inject(ctx, s, f)
	}
	end := time.Now()
	if err != nil {
		r.Problems = append(r.Problems, fmt.Sprintf("the fault could not be injected: %v", err))
	} else {
		s.logf("%s: fault over; waiting for a 202", sc.Name)
		deadline := end.Add(recoverLimit)
		for firstAcceptedAfter(load.Snapshot(), end) < 0 && time.Now().Before(deadline) && ctx.Err() == nil {
			waitCtx(ctx, 100*time.Millisecond)
		}
		waitCtx(ctx, tail)
	}
	pings := load.Stop()
	for _, p := range pings {
		s.ours[p.Msg] = true
	}
	r.Recovery = firstAcceptedAfter(pings, end)

	s.logf("%s: %d pings sent; waiting for the queue to drain", sc.Name, len(pings))
	stored, err := s.settle(ctx, pings, f.forgetBefore)
	if err != nil {
		r.Problems = append(r.Problems, fmt.Sprintf("reading /pong: %v", err))
		return r
	}
	injected := len(r.Problems)
	classify(&r, pings, stored, s.ours, f.forgetBefore)

	// Send every ping without a 202 again, with its key: now each must be
	// stored exactly once, the ones already stored ("recovered") included.
	// The second classification covers the first: a ping lost, doubled or
	// unexpected then still is.
	r.NoRetry = sc.noRetry
	if sc.noRetry == "" {
		if final, ok := s.retry(ctx, sc.Name, &r, pings, f.forgetBefore); ok {
			r.Forgotten, r.Lost, r.Duplicated, r.Unexpected = final.Forgotten, final.Lost, final.Duplicated, final.Unexpected
			r.Problems = append(r.Problems[:injected], final.Problems...)
			for _, n := range final.Notes {
				r.Notes = append(r.Notes, "retry: "+n)
			}
		}
	}
	if r.Accepted == 0 {
		r.Problems = append(r.Problems, "no ping got a 202: the load never reached the lab")
	}
	if r.Recovery < 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("no 202 within %s after the fault", recoverLimit))
	}
	if sc.check != nil {
		sc.check(ctx, s, f, pings, &r)
	}
	s.logf("%s: done", sc.Name)
	return r
}

// retry sends the pings without a 202 again, waits for the queue to drain
// and classifies every ping by its last answer. ok is false, with a
// problem added to r, when /pong could not be read.
func (s *Suite) retry(ctx context.Context, name string, r *Result, pings []Ping, forgetBefore time.Time) (final Result, ok bool) {
	var failed []int
	for i, p := range pings {
		if p.Status != http.StatusAccepted {
			failed = append(failed, i)
		}
	}
	if len(failed) == 0 {
		return final, false
	}
	toRetry := make([]Ping, len(failed))
	for j, i := range failed {
		toRetry[j] = pings[i]
	}
	s.logf("%s: retrying %d pings", name, len(failed))
	retries := Retry(s.Lab.GatewayURL(), toRetry)
	last := slices.Clone(pings)
	for j, i := range failed {
		last[i] = retries[j]
		r.Retried++
		if retries[j].Status == http.StatusAccepted {
			r.RetryAccepted++
		}
	}
	stored, err := s.settle(ctx, last, forgetBefore)
	if err != nil {
		r.Problems = append(r.Problems, fmt.Sprintf("reading /pong after the retries: %v", err))
		return final, false
	}
	classify(&final, last, stored, s.ours, forgetBefore)
	return final, true
}

// settle waits until /pong holds every 202 (but those sent before
// forgetBefore) and the queue is empty, or, when some never come, until
// /pong has not changed for a while with the queue empty; then it returns
// what /pong holds.
func (s *Suite) settle(ctx context.Context, pings []Ping, forgetBefore time.Time) ([]Stored, error) {
	want := map[string]bool{}
	for _, p := range pings {
		if p.Status == http.StatusAccepted && !p.Sent.Before(forgetBefore) {
			want[p.Msg] = true
		}
	}
	deadline := time.Now().Add(settleLimit)
	lastLen, lastChange := -1, time.Now()
	for {
		stored, err := ReadPong(ctx, s.Lab.GatewayURL())
		if err != nil && time.Now().After(deadline) {
			return nil, err
		}
		if err == nil {
			if len(stored) != lastLen {
				lastLen, lastChange = len(stored), time.Now()
			}
			missing := len(want)
			for _, m := range stored {
				if want[m.Msg] {
					missing--
				}
			}
			depth, qerr := s.queueLength(ctx, queue)
			drained := qerr == nil && depth == 0
			switch {
			case missing == 0 && drained:
				return stored, nil
			case drained && time.Since(lastChange) > 10*time.Second:
				return stored, nil // the missing ones are lost
			case time.Now().After(deadline):
				return stored, nil
			}
		}
		if err := waitCtx(ctx, 500*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

// queueLength is the number of messages in a queue, ready or not yet
// acknowledged, from the management API.
func (s *Suite) queueLength(ctx context.Context, name string) (int, error) {
	cfg := s.Lab.Config()
	var q struct {
		Messages int `json:"messages"`
	}
	err := getJSON(ctx, s.Lab.ManagementURL()+"/api/queues/%2F/"+strings.ReplaceAll(name, "/", "%2F"), cfg.RabbitMQUser+":"+cfg.RabbitMQPass, &q)
	return q.Messages, err
}

// Select returns the scenarios named, all when none is: the one node's,
// then the cluster's.
func Select(names []string) ([]Scenario, error) {
	all := append(Scenarios(), ClusterScenarios()...)
	if len(names) == 0 {
		return all, nil
	}
	var picked []Scenario
	for _, n := range names {
		found := false
		for _, sc := range all {
			if sc.Name == n {
				picked, found = append(picked, sc), true
			}
		}
		if !found {
			var known []string
			for _, sc := range all {
				known = append(known, sc.Name)
			}
			return nil, fmt.Errorf("unknown scenario %q: the scenarios are %s", n, strings.Join(known, ", "))
		}
	}
	return picked, nil
}

// StartLab starts a whole lab for the suite on free ports, its state in
// dir, as the tests do: one broker node, or a cluster of three.
func StartLab(ctx context.Context, dir string, cluster bool) (*runner.Lab, error) {
	env := Env
	if cluster {
		env = ClusterEnv
	}
	l, err := runner.NewTest(dir, env...)
	if err != nil {
		return nil, err
	}
	if err := l.Start(ctx, runner.Parts()); err != nil {
		return nil, err
	}
	return l, nil
}

// Main is `lab fault [-rate N] [scenario...]`: it starts a lab of its own
// on free ports, runs the scenarios and prints the table; the cluster's
// scenarios run on a second lab, of three broker nodes. It fails when a
// promise was broken.
func Main(ctx context.Context, args []string, stdout io.Writer) error {
	flags := flag.NewFlagSet("lab fault", flag.ContinueOnError)
	flags.SetOutput(stdout)
	rate := flags.Int("rate", loadRate, "pings per second the load sends")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if *rate < 1 || *rate > 10000 {
		return fmt.Errorf("-rate must be from 1 to 10000 pings per second, got %d", *rate)
	}
	scenarios, err := Select(flags.Args())
	if err != nil {
		return err
	}
	var results []Result
	failed := false
	var dirs []string
	for _, cluster := range []bool{false, true} {
		var these []Scenario
		for _, sc := range scenarios {
			if sc.cluster == cluster {
				these = append(these, sc)
			}
		}
		if len(these) == 0 || ctx.Err() != nil {
			continue
		}
		dir, err := os.MkdirTemp("", "lab-fault-")
		if err != nil {
			return err
		}
		dirs = append(dirs, dir)
		what := "a lab"
		if cluster {
			what = "a lab with a cluster of three broker nodes"
		}
		fmt.Fprintf(stdout, "Starting %s on free ports (state in %s)...\n", what, dir)
		l, err := StartLab(ctx, dir, cluster)
		if err != nil {
			return err
		}
		suite := NewSuite(l, stdout)
		suite.Rate = *rate
		for _, sc := range these {
			r := suite.Run(ctx, sc)
			results = append(results, r)
			failed = failed || !r.OK()
			if ctx.Err() != nil {
				break
			}
		}
		l.Stop()
	}
	fmt.Fprintln(stdout)
	WriteTable(stdout, results)
	if failed {
		if len(dirs) == 1 {
			return fmt.Errorf("the delivery promise was broken; the lab's logs are in %s", dirs[0])
		}
		return fmt.Errorf("the delivery promise was broken; the labs' logs are in %s", strings.Join(dirs, " and "))
	}
	for _, dir := range dirs {
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	}
	return nil
}
