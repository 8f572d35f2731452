package bench

import (
	"fmt"
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
