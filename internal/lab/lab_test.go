package lab

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMentions(t *testing.T) {
	dir := "/var/lib/bulkhead-lab"
	for _, c := range []struct {
		args []string
		want bool
	}{
		{[]string{"bulkhead", "manager", "--data-dir", dir + "/manager"}, true},
		{[]string{"bulkhead", "agent", "--state-dir=" + dir + "/agents/hv1"}, true},
		{[]string{"ip", "netns", "exec", "x", "bulkhead", "lab", "app", "dns", "--config-file", dir + "/apps/dns1/dns.json"}, true},
		// The user's own commands name the directory, not a path in it.
		{[]string{"sudo", "bulkhead", "lab", "down", "--dir", dir}, false},
		{[]string{"bulkhead", "lab", "status", "--dir=" + dir}, false},
		{[]string{"cat", dir + "-old/state.json"}, false},
		{nil, false},
	} {
		if got := mentions(c.args, dir); got != c.want {
			t.Errorf("mentions(%q) = %v, want %v", c.args, got, c.want)
		}
	}
}

func TestProcIdentity(t *testing.T) {
	state, start, err := procStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if state == 'Z' || start == 0 {
		t.Fatalf("procStat(self) = %c %d", state, start)
	}
	if p := (Proc{PID: os.Getpid(), Start: start}); !p.Alive() {
		t.Error("this process is not alive by its own record")
	}
	// Same pid, another start time: another process that reused the pid.
	if p := (Proc{PID: os.Getpid(), Start: start + 1}); p.Alive() {
		t.Error("a record with another start time matched this process")
	}
	if p := (Proc{}); p.Alive() {
		t.Error("an empty record is alive")
	}
	if !ancestors()[os.Getpid()] || !ancestors()[os.Getppid()] {
		t.Error("ancestors() misses this process or its parent")
	}
}

func TestStartAndStop(t *testing.T) {
	logPath := filepath.Join(t.TempDir(), "sleep.log")
	p, err := startProc([]string{"/bin/sh", "-c", "echo started; exec sleep 30"}, nil, logPath)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Alive() {
		t.Fatal("started process is not alive")
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if b, _ := os.ReadFile(logPath); strings.Contains(string(b), "started") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the process's output did not reach its log")
		}
	}
	stop([]Proc{p}, 5*time.Second)
	if p.Alive() {
		t.Fatal("process survived stop")
	}
}

func TestOptions(t *testing.T) {
	for _, c := range []struct {
		o       Options
		wantErr string
	}{
		{Options{Dir: "rel/dir"}, ""},
		{Options{Dir: "/x", Prefix: "bh-lab"}, "prefix"},
		{Options{Dir: "/x", Prefix: "1lab"}, "prefix"},
		{Options{Dir: "/x", Prefix: "abcdefghijklmnopq"}, "prefix"},
	} {
		err := c.o.setDefaults()
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("%+v: %v", c.o, err)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("%+v: error %v, want one about %s", c.o, err, c.wantErr)
		case err == nil && !filepath.IsAbs(c.o.Dir):
			t.Errorf("dir %q is not absolute", c.o.Dir)
		}
	}
}

func TestLoopbackAddr(t *testing.T) {
	got, err := loopbackAddr("--listen", "127.0.0.1:0")
	if err != nil || strings.HasSuffix(got, ":0") {
		t.Errorf("port 0: %q %v, want a free port", got, err)
	}
	for _, bad := range []string{"0.0.0.0:8443", "10.0.0.1:8443", "localhost", "example.com:1"} {
		if _, err := loopbackAddr("--listen", bad); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}

func TestStateRoundTrip(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadState(dir); err == nil || !strings.Contains(err.Error(), "no lab") {
		t.Fatalf("empty dir: %v, want no lab", err)
	}
	st := &State{Version: stateVersion, Dir: dir, Prefix: "bhq", Scenario: "shop", Created: time.Now().UTC(),
		Manager:   Manager{Proc: &Proc{PID: 1 << 30}},
		Workloads: []Workload{{Name: "web1", Host: "hv1", NetNS: "bhq-hv1-web1", IPv4: "10.77.1.10"}},
	}
	if err := st.Save(); err != nil {
		t.Fatal(err)
	}
	got, err := LoadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.Prefix != "bhq" || got.Workload("web1") == nil || got.Workload("web2") != nil {
		t.Errorf("round trip: %+v", got)
	}
	problems := strings.Join(got.Problems(), "\n")
	for _, want := range []string{"did not finish", "manager is not running", "namespace bhq-hv1-web1 is gone"} {
		if !strings.Contains(problems, want) {
			t.Errorf("problems %q: want %q", problems, want)
		}
	}
	got.Version = 99
	if err := got.Save(); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadState(dir); err == nil || !strings.Contains(err.Error(), "version 99") {
		t.Errorf("version 99: %v", err)
	}
}
