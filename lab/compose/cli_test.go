package compose

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// TestComposeConfig runs the real `docker compose config` where it is
// installed; it validates the file against the Compose specification as the
// engine's client will. It needs no running engine. Where neither
// `docker compose` nor `docker-compose` is installed the test says so and
// passes: compose-go, which the other tests load the file with, is the
// library `docker compose` is built on.
func TestComposeConfig(t *testing.T) {
	root := repoRoot(t)
	var compose []string
	for _, candidate := range [][]string{{"docker", "compose"}, {"docker-compose"}} {
		if _, err := exec.LookPath(candidate[0]); err != nil {
			continue
		}
		version := append(append([]string{}, candidate[1:]...), "version")
		if exec.CommandContext(t.Context(), candidate[0], version...).Run() == nil {
			compose = candidate
			break
		}
	}
	if compose == nil {
		t.Log("neither `docker compose` nor `docker-compose` is installed: docker compose config was not run")
		return
	}
	// The lab alone, and with the cluster override on top.
	for i := range composeFiles {
		args := append(slices.Clone(compose[1:]), "--project-directory", root)
		for _, f := range composeFiles[:i+1] {
			args = append(args, "-f", filepath.Join(root, f))
		}
		args = append(args, "--env-file", filepath.Join(root, ".env.example"), "config", "--quiet")
		cmd := exec.CommandContext(t.Context(), compose[0], args...)
		// Only what the client needs to run: no variables from the
		// caller's shell take part in interpolation.
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", cmd.Args, err, out)
		}
	}
}
