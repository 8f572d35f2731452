package runner

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestExitStatusNamesTheSignal kills a process as a crash would and checks
// that the runner says it was killed, and by what.
func TestExitStatusNamesTheSignal(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	p, err := startProcess("sleeper", cmd, filepath.Join(t.TempDir(), "sleeper.log"), nil, syscall.SIGTERM)
	if err != nil {
		t.Fatal(err)
	}
	p.kill()
	if got, want := p.exitStatus(), "killed by signal 9 (SIGKILL)"; got != want {
		t.Errorf("exitStatus() = %q, want %q", got, want)
	}
}

// TestStopRecordedStopsWhatARunnerLeft starts processes the way the runner
// starts parts (each leading a process group), records them as a runner that
// is gone would have, and checks that StopRecorded stops them, the one that
// ignores its stop signal with SIGKILL, and removes the record.
func TestStopRecordedStopsWhatARunnerLeft(t *testing.T) {
	state := t.TempDir()
	// Each shell starts a child, as nginx starts its workers, and says
	// when it has.
	start := func(name, script string) recordedProcess {
		cmd := exec.Command("sh", "-c", script+" & echo started; wait")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
		if line, _ := bufio.NewReader(stdout).ReadString('\n'); line != "started\n" {
			t.Fatalf("%s printed %q", name, line)
		}
		// Reap it once it exits, so that it does not linger as a zombie
		// of this test, which a runner's parts never are of lab stop.
		go cmd.Wait()
		return recordedProcess{Name: name, PID: cmd.Process.Pid, Start: startTime(cmd.Process.Pid), StopSig: int(syscall.SIGTERM)}
	}
	polite := start("polite", "sleep 60")
	// SIGTERM ignored, by the shell and the child that inherits it.
	stubborn := start("stubborn", "trap '' TERM; sleep 60")
	gone := recordedProcess{Name: "runner", PID: 1, Start: 1} // pid 1 did not start at tick 1
	rec := runRecord{Boot: bootID(), Runner: gone, Parts: []recordedProcess{polite, stubborn}}
	data, _ := json.Marshal(rec)
	if err := os.MkdirAll(recordDir(state), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(recordDir(state), "1.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if got := holderOf(state, 0); got != "" {
		t.Errorf("holderOf a port nothing recorded holds = %q, want none", got)
	}

	var out bytes.Buffer
	if err := StopRecorded(state, &out, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, p := range rec.Parts {
		// The leader may wait a moment for this test to reap it.
		for deadline := time.Now().Add(5 * time.Second); syscall.Kill(-p.PID, 0) == nil; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Errorf("%s's process group %d still runs after StopRecorded", p.Name, p.PID)
				break
			}
		}
	}
	for _, want := range []string{"Stopped polite (pid", "Killed stubborn (pid", "The lab is stopped."} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("StopRecorded printed:\n%s\nwant a line with %q", out.String(), want)
		}
	}
	if _, err := os.Stat(filepath.Join(recordDir(state), "1.json")); !os.IsNotExist(err) {
		t.Errorf("the record is still there after StopRecorded (%v)", err)
	}
	out.Reset()
	if err := StopRecorded(state, &out, time.Second); err != nil || !strings.Contains(out.String(), "No lab of this checkout is running") {
		t.Errorf("StopRecorded with nothing recorded: %v\n%s", err, out.String())
	}
}

// TestKillRecordedNode records a process as a cluster's node would be, and
// checks that lab kill finds it by the node's name and kills its process
// group, and says what is wrong with a name that names no node.
func TestKillRecordedNode(t *testing.T) {
	state := t.TempDir()
	cmd := exec.Command("sh", "-c", "sleep 60 & wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	go cmd.Wait() // reaps it once killed, as the runner reaps its parts
	node := recordedProcess{Name: "rabbitmq-2", PID: cmd.Process.Pid, Start: startTime(cmd.Process.Pid), Ports: []int{41673, 51673, 61673}}
	runner := recordedProcess{Name: "runner", PID: os.Getpid(), Start: startTime(os.Getpid())}
	data, _ := json.Marshal(runRecord{Boot: bootID(), Runner: runner, Parts: []recordedProcess{node}})
	if err := os.MkdirAll(recordDir(state), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(recordDir(state), "1.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}

	for _, bad := range []string{"rabbitmq-2", "lab-41673", "lab-x@localhost", "rabbit@rabbitmq-2"} {
		if err := KillRecordedNode(state, bad, io.Discard); err == nil || !strings.Contains(err.Error(), "lab-PORT@localhost") {
			t.Errorf("KillRecordedNode(%q) = %v, want an error naming the form lab-PORT@localhost", bad, err)
		}
	}
	if err := KillRecordedNode(state, "lab-41674@localhost", io.Discard); err == nil || !strings.Contains(err.Error(), "no running lab") {
		t.Errorf("KillRecordedNode of a node nothing recorded = %v, want no running lab", err)
	}
	var out bytes.Buffer
	if err := KillRecordedNode(state, "lab-41673@localhost", &out); err != nil {
		t.Fatal(err)
	}
	if want := "Killed node lab-41673@localhost (rabbitmq-2, pid "; !strings.HasPrefix(out.String(), want) {
		t.Errorf("KillRecordedNode printed %q, want %q...", out.String(), want)
	}
	for deadline := time.Now().Add(5 * time.Second); syscall.Kill(-cmd.Process.Pid, 0) == nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the node's process group still runs after KillRecordedNode")
		}
	}
}

// TestRecordedBroker: lab ctl learns from the record that the lab on its
// port runs a cluster, of how many nodes, and where its port mapper is.
func TestRecordedBroker(t *testing.T) {
	state := t.TempDir()
	runner := recordedProcess{Name: "runner", PID: os.Getpid(), Start: startTime(os.Getpid())}
	node := func(name string, port int) recordedProcess {
		return recordedProcess{Name: name, PID: 1, Start: 1, Ports: []int{port, port + 10000, port + 20000}}
	}
	rec := runRecord{Boot: bootID(), Runner: runner, Parts: []recordedProcess{
		node("rabbitmq-1", 41672), node("rabbitmq-2", 41673), node("rabbitmq-3", 41674), {Name: "epmd", PID: 1, Start: 1, Ports: []int{62672}},
	}}
	data, _ := json.Marshal(rec)
	if err := os.MkdirAll(recordDir(state), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(recordDir(state), "1.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if nodes, epmd, ok := RecordedBroker(state, 41672); !ok || nodes != 3 || epmd != 62672 {
		t.Errorf("RecordedBroker on the cluster's port = %d nodes, epmd %d, %v; want 3, 62672, true", nodes, epmd, ok)
	}
	if _, _, ok := RecordedBroker(state, 41673); ok {
		t.Error("RecordedBroker on the second node's port found a broker: no lab's first node is there")
	}
	if _, _, ok := RecordedBroker(t.TempDir(), 41672); ok {
		t.Error("RecordedBroker with nothing recorded found a broker")
	}
}
