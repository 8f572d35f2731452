package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"
)

// publisher publishes messages to the broker. *amqpPublisher is the real
// one; the handler tests use a fake.
type publisher interface {
	// Publish returns once the broker has confirmed m, or with an error
	// (a *publishError when the broker was the problem).
	Publish(ctx context.Context, m message) error
	// Ready returns nil while messages can be published, else why not.
	Ready() error
}

// statusClientClosedRequest is the status logged and counted for a
// request whose client hung up before its answer: nginx's 499, so that both
// logs say the same.
const statusClientClosedRequest = 499

// handlePing publishes the message in the request and answers 202 Accepted
// with it once the broker has confirmed that it is stored: read the
// request, publish, answer. keys.publish publishes every message; with an
// Idempotency-Key it also turns a retry into the same message
// (idempotency.go).
func handlePing(logger *slog.Logger, cfg config, pub publisher, keys *idempotencyKeys) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, key, ok := readPing(w, r)
		if !ok {
			return // readPing answered with a problem
		}

		m := newMessage(req.Msg, requestIDFrom(r.Context()), time.Now())
		m, replayed, err := keys.publish(r.Context(), key, m, pub)
		if err != nil {
			answerPublishError(logger, cfg, w, r, m, key, err)
			return
		}

		if replayed {
			// The answer to an earlier request with this key, repeated.
			w.Header().Set("Idempotent-Replayed", "true")
		}
		w.Header().Set("Location", "/pong/"+m.ID)
		writeJSON(w, r, http.StatusAccepted, "application/json", m)
	})
}

// readPing reads a POST /ping request: its Content-Type, its
// Idempotency-Key ("" when it has none) and its JSON body. A request it
// cannot read it answers itself, with a problem saying what to fix, and
// reports false.
func readPing(w http.ResponseWriter, r *http.Request) (req pingRequest, key string, ok bool) {
	mediaType, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mediaType != "application/json" {
		writeProblem(w, r, http.StatusUnsupportedMediaType,
			`Send the body as JSON with Content-Type: application/json, e.g. curl --json '{"msg":"hello"}' http://localhost:8000/ping`)
		return req, "", false
	}

	key, err = parseIdempotencyKey(r.Header)
	if err != nil {
		writeProblem(w, r, http.StatusBadRequest, err.Error())
		return req, "", false
	}

	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeProblem(w, r, http.StatusRequestEntityTooLarge,
				fmt.Sprintf("The request body is larger than 16 KiB (%d bytes); send a smaller body.", maxBodyBytes))
			return req, "", false
		}
		writeProblem(w, r, http.StatusBadRequest, "The request body could not be read; send it again.")
		return req, "", false
	}
	req, err = decodePing(body)
	if err != nil {
		writeProblem(w, r, http.StatusBadRequest, err.Error())
		return req, "", false
	}
	return req, key, true
}

// answerPublishError answers a POST /ping whose message was not confirmed.
func answerPublishError(logger *slog.Logger, cfg config, w http.ResponseWriter, r *http.Request, m message, key string, err error) {
	if ctxErr := r.Context().Err(); ctxErr != nil && errors.Is(err, ctxErr) {
		// The client hung up while this request waited for an earlier
		// one with the same key. Nothing failed: that request publishes
		// the message; there is just nobody left to answer.
		logger.Info("client went away while waiting for the earlier request with its Idempotency-Key",
			slog.String("request_id", requestIDFrom(r.Context())), slog.String("idempotency_key", key))
		w.WriteHeader(statusClientClosedRequest)
		return
	}
	if reused, ok := errors.AsType[*keyReusedError](err); ok {
		writeProblem(w, r, http.StatusUnprocessableEntity, reused.Error())
		return
	}
	detail, result := publishFailure(cfg, err)
	logger.Warn("publish failed", slog.String("request_id", m.RequestID), slog.String("id", m.ID),
		slog.String("result", result), slog.Any("error", err))
	w.Header().Set("Retry-After", "1")
	writeProblem(w, r, http.StatusServiceUnavailable, detail)
}

// publishFailure puts a failed publish into words for the client: what
// became of the message, and what to do. It returns the result label too,
// for the log.
func publishFailure(cfg config, err error) (detail, result string) {
	pubErr, ok := errors.AsType[*publishError](err)
	if !ok {
		return "The message could not be published; it may not have been stored. Retry the request.", "error"
	}
	timeout := cfg.ConfirmTimeout
	switch {
	case errors.Is(pubErr, errNotConnected):
		detail = fmt.Sprintf("service01 is not connected to RabbitMQ at %s, so the message was not sent. Retry in a few seconds.", cfg.RabbitMQAddr())
	case pubErr.Result == resultBlocked:
		reason := "an alarm"
		if b, ok := errors.AsType[*blockedError](pubErr); ok {
			reason = b.Reason
		}
		detail = fmt.Sprintf("RabbitMQ is blocked by a memory or disk alarm (%s) and accepts no messages, so the message was not sent. Retry later; the alarm clears once the broker has freed memory or disk space.", reason)
	case pubErr.Result == resultUnavailable && pubErr.Sent:
		detail = "The connection to RabbitMQ closed before the message was confirmed; it may not have been stored. Retry the request."
	case pubErr.Result == resultUnavailable:
		detail = "The connection to RabbitMQ failed (could not open a channel, or failed while sending), so the message was not sent. Retry the request."
	case pubErr.Result == resultTimeout && pubErr.Sent:
		detail = fmt.Sprintf("RabbitMQ did not confirm the message within %s; it may not have been stored. Retry the request.", timeout)
	case pubErr.Result == resultTimeout:
		detail = fmt.Sprintf("No channel to RabbitMQ was free or could be opened within %s, so the message was not sent. Retry the request.", timeout)
	case pubErr.Result == resultReturned:
		detail = fmt.Sprintf("RabbitMQ could not route the message to any queue: no queue is bound to exchange %q with routing key %q, so it was not stored. Check the queue and its binding in the management UI (restarting service01 or service02 declares them again), then retry.", cfg.Exchange, cfg.RoutingKey)
	default: // resultNacked
		detail = "RabbitMQ refused the message (basic.nack), so it may not have been stored. Retry the request."
	}
	return detail, pubErr.Result
}

// handleHealthz answers 200 while the process is up.
func handleHealthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, r, http.StatusOK, "application/json", map[string]string{"status": "ok"})
	})
}

// handleReadyz answers 200 while pub can publish, else 503 saying why.
func handleReadyz(pub publisher) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := pub.Ready(); err != nil {
			writeProblem(w, r, http.StatusServiceUnavailable, err.Error())
			return
		}
		writeJSON(w, r, http.StatusOK, "application/json", map[string]string{"status": "ready"})
	})
}

// handleMethodNotAllowed answers 405 on a known path asked with a method it
// does not serve. (ServeMux's own 405 is plain text.)
func handleMethodNotAllowed(allow ...string) http.Handler {
	allowed := strings.Join(allow, ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allowed)
		writeProblem(w, r, http.StatusMethodNotAllowed,
			fmt.Sprintf("%s is not allowed on %s; use %s.", r.Method, r.URL.Path, strings.Join(allow, " or ")))
	})
}

// handleNotFound answers 404 for every path service01 does not serve.
func handleNotFound() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, http.StatusNotFound,
			fmt.Sprintf("There is no route for %s %s here. service01 serves POST /ping, GET /healthz, GET /readyz and GET /metrics.", r.Method, r.URL.Path))
	})
}
