package bench

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cpuParts are the columns of the CPU table: the lab's parts and the
// benchmark process itself, which generates the load.
var cpuParts = []string{"nginx", "service01", "service02", "rabbitmq", "bench"}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's CPU times: 100 on
// every Linux the lab runs on.
const clockTicks = 100

// cpuTimes returns the CPU time (user + system, in seconds) each part of the
// lab whose state is in stateDir has used so far, and the benchmark process's
// own. The runner starts each part in a process group of its own, so a part
// is every process of a group one of whose members names stateDir on its
// command line (nginx's workers do not, their master does). On a two-core
// machine this says where the cycles of a row go.
func cpuTimes(stateDir string) map[string]float64 {
	type proc struct {
		pgrp  string
		ticks float64
		cmd   string
	}
	var procs []proc
	owner := map[string]string{} // process group -> part
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// The command name, in parentheses, may hold spaces: the fields
		// counted from 3 (state) start after the last ')'.
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) < 13 {
			continue
		}
		utime, _ := strconv.ParseFloat(f[11], 64)
		stime, _ := strconv.ParseFloat(f[12], 64)
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		p := proc{pgrp: f[2], ticks: utime + stime, cmd: string(cmd)}
		procs = append(procs, p)
		if strings.Contains(p.cmd, stateDir) {
			switch {
			case strings.Contains(p.cmd, "service01"):
				owner[p.pgrp] = "service01"
			case strings.Contains(p.cmd, "service02"):
				owner[p.pgrp] = "service02"
			case strings.Contains(p.cmd, "nginx"):
				owner[p.pgrp] = "nginx"
			case strings.Contains(p.cmd, "beam") || strings.Contains(p.cmd, "rabbitmq"):
				owner[p.pgrp] = "rabbitmq"
			}
		}
	}
	times := map[string]float64{}
	for _, p := range procs {
		if part, ok := owner[p.pgrp]; ok {
			times[part] += p.ticks / clockTicks
		}
	}
	if stat, err := os.ReadFile("/proc/self/stat"); err == nil {
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) >= 13 {
			utime, _ := strconv.ParseFloat(f[11], 64)
			stime, _ := strconv.ParseFloat(f[12], 64)
			times["bench"] = (utime + stime) / clockTicks
		}
	}
	return times
}

// CPU is the CPU time per operation of each part during one row, in
// microseconds.
type CPU map[string]float64

// cpuPerOp is the CPU each part used between two cpuTimes readings, per
// operation.
func cpuPerOp(before, after map[string]float64, ops int) CPU {
	if ops == 0 {
		return nil
	}
	c := CPU{}
	for _, p := range cpuParts {
		c[p] = (after[p] - before[p]) * 1e6 / float64(ops)
	}
	return c
}

// Total is the CPU per operation of all the parts together.
func (c CPU) Total() float64 {
	var t float64
	for _, v := range c {
		t += v
	}
	return t
}
