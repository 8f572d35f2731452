package runner

import (
	"errors"
	"os"
	"path/filepath"
)

// RepoRoot finds the repository from the working directory: the folder with
// go.work, at or above it.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run the lab from inside its repository (no go.work found above the working directory)")
		}
		dir = parent
	}
}
