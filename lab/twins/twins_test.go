// Package twins checks that the files service01 and service02 have for the
// same reason stay the same. The services share no module (each builds on
// its own, from its own folder), so what both need is copied on purpose,
// and this test keeps the copies from drifting apart.
package twins

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// files are the twins: in both services, the same after normalise.
var files = []string{
	"dial.go",          // dialling the broker (each of a cluster's nodes in turn), backoff between attempts
	"dial_test.go",     // dialling a cluster's nodes when some are down
	"healthcheck.go",   // the container healthcheck, -healthcheck
	"middleware.go",    // request ids, the log line and metrics of every request
	"parseconfig.go",   // reading the environment, LOG_LEVEL, what every service has
	"problem.go",       // RFC 9457 problem details and writeJSON
	"rabbitmq.go",      // the broker's variables, their validation, the AMQP URL
	"topology.go",      // the exchanges and queues both declare
	"rabbitmq_test.go", // the test broker both services' tests start
	"main_test.go",     // sharing it across a package; skipping without it
}

// serviceName matches the one place where twins may differ: the name of
// the service they belong to.
var serviceName = regexp.MustCompile(`(?i)service0[12]`)

// normalise replaces the service's name, in any case, by a placeholder.
func normalise(src []byte) string {
	return serviceName.ReplaceAllStringFunc(string(src), func(s string) string {
		return s[:len(s)-2] + "NN"
	})
}

func TestTwinsStayTwins(t *testing.T) {
	root := filepath.Join("..", "..")
	for _, name := range files {
		t.Run(name, func(t *testing.T) {
			one, err := os.ReadFile(filepath.Join(root, "service01", name))
			if err != nil {
				t.Fatal(err)
			}
			two, err := os.ReadFile(filepath.Join(root, "service02", name))
			if err != nil {
				t.Fatal(err)
			}
			if diff := firstDifference(normalise(one), normalise(two)); diff != "" {
				t.Errorf("service01/%s and service02/%s have drifted apart (service names aside); make them the same again, in both:\n%s", name, name, diff)
			}
		})
	}
}

// firstDifference describes where a and b first differ, line by line, or
// returns "" when they are the same.
func firstDifference(a, b string) string {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := range max(len(la), len(lb)) {
		var x, y string
		if i < len(la) {
			x = la[i]
		}
		if i < len(lb) {
			y = lb[i]
		}
		if x != y || i >= len(la) || i >= len(lb) {
			return fmt.Sprintf("line %d:\n  service01: %q\n  service02: %q", i+1, x, y)
		}
	}
	return ""
}

func TestNormalise(t *testing.T) {
	got := normalise([]byte(`SetClientConnectionName("service02") // SERVICE01_PORT Service02`))
	want := `SetClientConnectionName("serviceNN") // SERVICENN_PORT ServiceNN`
	if got != want {
		t.Errorf("normalise = %q, want %q", got, want)
	}
	if firstDifference("a\nb", "a\nb") != "" || firstDifference("a\nb", "a\nc") == "" || firstDifference("a", "a\n") == "" {
		t.Error("firstDifference does not tell equal from different")
	}
}
