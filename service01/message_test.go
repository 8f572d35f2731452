package main

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"testing"
	"time"
)

// The golden example in docs/reference is the contract between the two
// services: what service01 publishes must have exactly its members, of the
// same JSON types, and the same date format.
func TestMessageMatchesGoldenExample(t *testing.T) {
	golden, err := os.ReadFile("../docs/reference/message.example.json")
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]any
	if err := json.Unmarshal(golden, &want); err != nil {
		t.Fatalf("golden example: %v", err)
	}

	now := time.Date(2026, 11, 22, 9, 15, 2, 123456789, time.FixedZone("CET", 3600))
	body, err := json.Marshal(newMessage("hello", "tutorial-1", now))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}

	if len(got) != len(want) {
		t.Errorf("published message has members %v, the golden example %v", keys(got), keys(want))
	}
	for k, v := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("published message has no %q", k)
			continue
		}
		if fmt.Sprintf("%T", g) != fmt.Sprintf("%T", v) {
			t.Errorf("%q is a %T, the golden example's a %T", k, g, v)
		}
	}

	// The same format as the example's date, in UTC, to the microsecond.
	format := regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$`)
	for _, date := range []any{want["date"], got["date"]} {
		if s, _ := date.(string); !format.MatchString(s) {
			t.Errorf("date %v is not RFC 3339 UTC with microseconds", date)
		}
	}
	if got["date"] != "2026-11-22T08:15:02.123456Z" {
		t.Errorf("date = %v, want 2026-11-22T08:15:02.123456Z (UTC, microseconds)", got["date"])
	}
	if got["msg"] != "hello" || got["request_id"] != "tutorial-1" {
		t.Errorf("message = %s", body)
	}
}

func TestNewUUID(t *testing.T) {
	v4 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := make(map[string]bool)
	for range 1000 {
		id := newUUID()
		if !v4.MatchString(id) {
			t.Fatalf("newUUID() = %q, not a UUID v4", id)
		}
		if seen[id] {
			t.Fatalf("newUUID() repeated %q", id)
		}
		seen[id] = true
	}
}

func keys(m map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}
