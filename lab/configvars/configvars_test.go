package configvars

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	write := func(name, src string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("config.go", `package main

type config struct {
	Port  int    `+"`"+`env:"PORT" envDefault:"8000"`+"`"+`
	Token string `+"`"+`env:"TOKEN,required"`+"`"+`
	Skip  string `+"`"+`env:""`+"`"+`
	Rabbit rabbit `+"`"+`envPrefix:"RABBITMQ_"`+"`"+`
	Inline struct {
		Level string `+"`"+`env:"LEVEL" envDefault:"info"`+"`"+`
	} `+"`"+`envPrefix:"LOG_"`+"`"+`
}

type rabbit struct {
	Host string `+"`"+`env:"HOST" envDefault:"localhost"`+"`"+`
}
`)
	write("config_test.go", "package main\n\ntype testConfig struct {\n\tX int `env:\"ONLY_IN_TESTS\"`\n}\n")

	vars, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Var{
		"PORT":          {Name: "PORT", Default: "8000", HasDefault: true},
		"TOKEN":         {Name: "TOKEN"},
		"RABBITMQ_HOST": {Name: "RABBITMQ_HOST", Default: "localhost", HasDefault: true},
		"LOG_LEVEL":     {Name: "LOG_LEVEL", Default: "info", HasDefault: true},
	}
	if len(vars) != len(want) {
		t.Errorf("got %d variables %v, want %d", len(vars), vars, len(want))
	}
	for name, w := range want {
		got, ok := vars[name]
		if !ok {
			t.Errorf("%s not found", name)
			continue
		}
		if !strings.HasPrefix(got.Pos, filepath.Join(dir, "config.go")+":") {
			t.Errorf("%s: Pos = %q, want config.go:line", name, got.Pos)
		}
		got.Pos = ""
		if got != w {
			t.Errorf("%s = %+v, want %+v", name, got, w)
		}
	}

	if _, err := Read(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no config.go") {
		t.Errorf("Read of a folder without config.go: err = %v", err)
	}
}
