package main

import (
	"net/http"
)

// problem is an RFC 9457 problem details object, the body of every error
// response. The gateway's own errors have the same members.
type problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail"`
	RequestID string `json:"request_id"`
}

// writeProblem answers with status and a problem whose detail is a sentence
// telling the client what happened and what to do about it.
func writeProblem(w http.ResponseWriter, r *http.Request, status int, detail string) {
	writeJSON(w, status, "application/problem+json", problem{
		Type:      "about:blank",
		Title:     http.StatusText(status),
		Status:    status,
		Detail:    detail,
		RequestID: requestIDFrom(r.Context()),
	})
}
