package main

import (
	"fmt"
	"net/http"
	"strconv"
	"unicode/utf8"
)

// readiness reports whether service02 can do its work: nil when it is
// consuming, else why not.
type readiness interface {
	Ready() error
}

const (
	defaultPageLimit = 100
	maxPageLimit     = 1000
	// receivedAtLayout is RFC 3339 with exactly six fractional digits, the
	// precision of the date service01 writes.
	receivedAtLayout = "2006-01-02T15:04:05.000000Z07:00"
)

// pongMessage is a stored message as GET /pong and GET /pong/{id} show it.
type pongMessage struct {
	ID         string `json:"id"`
	Msg        string `json:"msg"`
	Date       string `json:"date"`
	RequestID  string `json:"request_id"`
	ReceivedAt string `json:"received_at"`
}

func newPongMessage(r record) pongMessage {
	return pongMessage{
		ID:         r.ID,
		Msg:        r.Msg,
		Date:       r.Date,
		RequestID:  r.RequestID,
		ReceivedAt: r.ReceivedAt().Format(receivedAtLayout),
	}
}

// pongPage is the body of GET /pong.
type pongPage struct {
	Messages []pongMessage `json:"messages"`
	Next     *string       `json:"next"` // null when nothing more is stored right now
}

// handlePong lists the stored messages, oldest first, a page at a time:
// ?limit=1..1000 (default 100) messages after ?after=<the previous page's
// next>.
func handlePong(store *Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		limit := defaultPageLimit
		if q.Has("limit") {
			n, err := strconv.Atoi(q.Get("limit"))
			if err != nil || n < 1 || n > maxPageLimit {
				writeProblem(w, r, http.StatusBadRequest, fmt.Sprintf(
					"limit must be a whole number from 1 to %d (default %d), got %q",
					maxPageLimit, defaultPageLimit, truncate(q.Get("limit"), 32)))
				return
			}
			limit = n
		}
		var after uint64
		if q.Has("after") {
			epoch, seq, err := decodeCursor(q.Get("after"))
			if err != nil {
				writeProblem(w, r, http.StatusBadRequest,
					`after must be the "next" value of a previous GET /pong response, unchanged; leave it out to start from the oldest message`)
				return
			}
			// A cursor from before service02 restarted points into a
			// store that is gone: start from the oldest message, as for
			// a cursor whose message was evicted.
			if epoch == store.Epoch() {
				after = seq
			}
		}

		msgs, next, more := store.Page(after, limit)
		page := pongPage{Messages: make([]pongMessage, 0, len(msgs))}
		for _, m := range msgs {
			page.Messages = append(page.Messages, newPongMessage(m))
		}
		if more {
			cursor := encodeCursor(store.Epoch(), next)
			page.Next = &cursor
		}
		writeJSON(w, r, http.StatusOK, "application/json", page)
	})
}

// handlePongID shows one stored message.
func handlePongID(store *Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		// An id over maxIDChars is answered 404 like any other id that is
		// not stored, rather than 400: the request is well-formed, no such
		// message can exist (the consumer rejects such ids), and clients
		// need to handle only one answer for "not there".
		m, ok := store.Get(id)
		if !ok {
			shown := id
			if utf8.RuneCountInString(id) > maxIDChars {
				shown = truncate(id, maxIDChars) // no stored id is longer
			}
			writeProblem(w, r, http.StatusNotFound, fmt.Sprintf(
				"No message with id %q is stored. Ids come from POST /ping; the store keeps the newest %d messages in memory, and a restart of service02 empties it unless it replays the event log (SERVICE02_REPLAY).",
				shown, store.Capacity()))
			return
		}
		writeJSON(w, r, http.StatusOK, "application/json", newPongMessage(m))
	})
}

// handleHealthz answers while the process is up.
func handleHealthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, r, http.StatusOK, "application/json", map[string]string{"status": "ok"})
	})
}

// handleReadyz answers 200 only while service02 is consuming, else 503 with
// the reason.
func handleReadyz(ready readiness) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := ready.Ready(); err != nil {
			writeProblem(w, r, http.StatusServiceUnavailable, err.Error())
			return
		}
		writeJSON(w, r, http.StatusOK, "application/json", map[string]string{"status": "ready"})
	})
}

// handleMethodNotAllowed answers a known path requested with a method it
// does not serve.
func handleMethodNotAllowed(allow string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeProblem(w, r, http.StatusMethodNotAllowed, fmt.Sprintf(
			"%s does not accept %s; use one of: %s", truncate(r.URL.Path, 100), truncate(r.Method, 20), allow))
	})
}

// handleNotFound answers every path service02 does not serve.
func handleNotFound() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, http.StatusNotFound, fmt.Sprintf(
			"There is no route for %s %s here. service02 serves GET /pong, GET /pong/{id}, GET /healthz, GET /readyz and GET /metrics.",
			truncate(r.Method, 20), truncate(r.URL.Path, 100)))
	})
}
