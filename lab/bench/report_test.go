package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		in   []time.Duration
		want time.Duration
	}{
		{nil, 0},
		{[]time.Duration{5 * ms}, 5 * ms},
		{[]time.Duration{30 * ms, 4 * ms, 6 * ms}, 6 * ms}, // one stalled run does not move it
		{[]time.Duration{4 * ms, 9 * ms}, 9 * ms},
	}
	for _, tt := range tests {
		in := append([]time.Duration(nil), tt.in...)
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", in, got, tt.want)
		}
		for i := range in {
			if in[i] != tt.in[i] {
				t.Errorf("median reordered its argument: %v, was %v", tt.in, in)
			}
		}
	}
	if got, want := msList([]time.Duration{1200 * time.Microsecond, 36400 * time.Microsecond}), "1.20, 36.4 ms"; got != want {
		t.Errorf("msList = %q, want %q", got, want)
	}
}

// TestRowsExplainedNamePipelinedChannels keeps the text in step with the
// constant it describes.
func TestRowsExplainedNamePipelinedChannels(t *testing.T) {
	if want := fmt.Sprintf("sharing %d channels", pipelinedChannels); !strings.Contains(rowsExplained, want) {
		t.Errorf("rowsExplained does not say %q", want)
	}
}

// TestServiceChannelsIsService01sDefault keeps R's open-loop points
// publishing as service01 does: .env.example holds service01's defaults
// (service01's own config test checks that).
func TestServiceChannelsIsService01sDefault(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("SERVICE01_PUBLISH_CHANNELS=%d\n", serviceChannels)
	if !strings.Contains(string(b), want) {
		t.Errorf(".env.example has no line %q: serviceChannels and service01's default differ", strings.TrimSpace(want))
	}
	if md := (&Report{}).Markdown("make bench"); !strings.Contains(md, fmt.Sprintf("%d shared publish channels", serviceChannels)) {
		t.Errorf("the report's conditions do not say %d shared publish channels", serviceChannels)
	}
}
