package fault

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestClassify checks the classification on made-up pings and /pong
// contents, one of each kind.
func TestClassify(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	pings := []Ping{
		{Msg: "ok", Status: 202, ID: "1", Sent: at(5)},
		{Msg: "lost", Status: 202, ID: "2", Sent: at(5)},
		{Msg: "recovered", Status: 503, Sent: at(5)},
		{Msg: "failed", Status: 502, Sent: at(5)},
		{Msg: "noanswer", Status: 0, Sent: at(5)},
		{Msg: "twice", Status: 202, ID: "4", Sent: at(5)},
		{Msg: "otherid", Status: 202, ID: "5", Sent: at(5)},
	}
	stored := []Stored{
		{ID: "1", Msg: "ok"},
		{ID: "9", Msg: "recovered"},
		{ID: "4", Msg: "twice"},
		{ID: "4b", Msg: "twice"},
		{ID: "6", Msg: "otherid"},
		{ID: "7", Msg: "stranger"},
	}
	ours := map[string]bool{}
	for _, p := range pings {
		ours[p.Msg] = true
	}
	var r Result
	classify(&r, pings, stored, ours, time.Time{})

	want := Result{Sent: 7, Accepted: 4, Lost: 1, Duplicated: 1, Unexpected: 2, Recovered: 1}
	if r.Sent != want.Sent || r.Accepted != want.Accepted || r.Lost != want.Lost ||
		r.Duplicated != want.Duplicated || r.Unexpected != want.Unexpected || r.Recovered != want.Recovered {
		t.Errorf("got %+v\nwant counts of %+v", r, want)
	}
	if got := r.FailedString(); got != "none:1 502:1 503:1" {
		t.Errorf("FailedString = %q", got)
	}
	if r.OK() || len(r.Problems) != 3 {
		t.Errorf("problems = %q, want three (lost, duplicated, unexpected)", r.Problems)
	}
	if !strings.Contains(strings.Join(r.Problems, "\n"), "lost (id 2") {
		t.Errorf("problems do not name the lost ping: %q", r.Problems)
	}
}

func TestFirstAcceptedAfter(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	pings := []Ping{
		{Status: 202, Answered: t0.Add(-time.Second)},
		{Status: 503, Answered: t0.Add(time.Second)},
		{Status: 202, Answered: t0.Add(3 * time.Second)},
		{Status: 202, Answered: t0.Add(2 * time.Second)},
	}
	if got := firstAcceptedAfter(pings, t0); got != 2*time.Second {
		t.Errorf("firstAcceptedAfter = %s, want 2s", got)
	}
	if got := firstAcceptedAfter(pings, t0.Add(time.Minute)); got != -1 {
		t.Errorf("firstAcceptedAfter with none = %s, want -1", got)
	}
}

func TestSelect(t *testing.T) {
	all, err := Select(nil)
	if err != nil || len(all) != 13 || !all[10].cluster || all[9].cluster {
		t.Fatalf("Select(nil) = %d scenarios, %v; want 13, the cluster's 3 last", len(all), err)
	}
	picked, err := Select([]string{"poison", "leader-kill", "broker-kill"})
	if err != nil || len(picked) != 3 || picked[0].Name != "poison" || !picked[1].cluster {
		t.Errorf("Select = %v, %v", picked, err)
	}
	if _, err := Select([]string{"meteor"}); err == nil || !strings.Contains(err.Error(), "broker-restart") {
		t.Errorf("Select(meteor) error = %v, want one listing the scenarios", err)
	}
}

// TestRetainedSuffix: the pings gone from /pong may only be the log's
// oldest; one missing after a stored one is a ping the replay skipped.
func TestRetainedSuffix(t *testing.T) {
	logged := []string{"a", "b", "c", "d", "e"}
	for _, tc := range []struct {
		name   string
		in     []string
		held   int
		missed []string
	}{
		{"retention took a and b", []string{"c", "d", "e"}, 3, nil},
		{"the replay skipped d", []string{"c", "e"}, 2, []string{"d"}},
		{"nothing stored", nil, 0, nil},
	} {
		in := make(map[string]bool)
		for _, msg := range tc.in {
			in[msg] = true
		}
		held, missed := retainedSuffix(logged, in)
		if held != tc.held || !slices.Equal(missed, tc.missed) {
			t.Errorf("%s: held %d, missed %v; want %d, %v", tc.name, held, missed, tc.held, tc.missed)
		}
	}
}
