package main

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// problem is an RFC 9457 problem details object, the body of every error
// response. The gateway's own errors have the same members.
type problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail"` // what went wrong and what to do about it
	RequestID string `json:"request_id"`
}

// writeProblem answers r with status and a problem whose detail is a
// sentence telling the client what happened and what to do about it.
func writeProblem(w http.ResponseWriter, r *http.Request, status int, detail string) {
	writeJSON(w, r, status, "application/problem+json", problem{
		Type:      "about:blank", // the status says it all; no further documentation
		Title:     http.StatusText(status),
		Status:    status,
		Detail:    detail,
		RequestID: requestIDFrom(r.Context()),
	})
}

// writeJSON writes v as the JSON body of a response: the one place that
// encodes responses.
func writeJSON(w http.ResponseWriter, r *http.Request, status int, contentType string, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only a programming error (a value JSON cannot represent) gets
		// here; a problem always encodes, so this does not loop.
		writeProblem(w, r, http.StatusInternalServerError, "service02 could not encode its response: "+err.Error()+"; this is a bug in service02")
		return
	}
	body = append(body, '\n')
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(body) // an error means the client went away: nothing left to do
}
