package lab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Proc is a process the lab started, as recorded in the state file. PID
// alone could name another process after a reboot or pid reuse; Start (the
// kernel's start time of the process, in clock ticks since boot) ties the
// record to the one process the lab made.
type Proc struct {
	PID   int      `json:"pid"`
	Start uint64   `json:"start"`
	Args  []string `json:"args"`
	Log   string   `json:"log"`
}

// procStat returns a process's state letter and start time from
// /proc/PID/stat.
func procStat(pid int) (state byte, start uint64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) may hold spaces and parentheses: the
	// fields that follow start after its last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); starttime is field 22.
	if len(f) < 20 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat: start time: %w", pid, err)
	}
	return f[0][0], start, nil
}

// Alive reports whether the recorded process still runs (a zombie does
// not).
func (p Proc) Alive() bool {
	if p.PID <= 0 {
		return false
	}
	state, start, err := procStat(p.PID)
	return err == nil && start == p.Start && state != 'Z' && state != 'X'
}

// startProc starts args detached from the caller (its own session, so that
// it outlives `bulkhead lab up` and a terminal's signals), with stdin from
// /dev/null and stdout and stderr appended to logPath.
func startProc(args, env []string, logPath string) (Proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return Proc{}, fmt.Errorf("lab: log %s: %w", logPath, err)
	}
	defer logf.Close()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return Proc{}, fmt.Errorf("lab: start %s: %w", strings.Join(args, " "), err)
	}
	p := Proc{PID: cmd.Process.Pid, Args: args, Log: logPath}
	if _, p.Start, err = procStat(p.PID); err != nil {
		// It died before it could be looked at: keep the record, it is
		// harmless (Alive is false) and the log says why.
		p.Start = 0
	}
	// Reap it if it ends while this process still runs, so that a dead
	// child shows as dead rather than as a zombie we hold.
	go cmd.Wait()
	return p, nil
}

// stop ends the recorded processes: SIGTERM to each one's process group,
// then SIGKILL to those still running after grace. Processes that are not
// (or no longer) the recorded ones are left alone.
func stop(procs []Proc, grace time.Duration) {
	var live []Proc
	for _, p := range procs {
		if p.Alive() {
			signalGroup(p.PID, syscall.SIGTERM)
			live = append(live, p)
		}
	}
	waitGone(live, grace)
	for _, p := range live {
		if p.Alive() {
			signalGroup(p.PID, syscall.SIGKILL)
		}
	}
	waitGone(live, 2*time.Second)
}

// signalGroup signals the process group led by pid (every process the lab
// starts leads its own session), falling back to pid alone.
func signalGroup(pid int, sig syscall.Signal) {
	if err := syscall.Kill(-pid, sig); err != nil {
		syscall.Kill(pid, sig)
	}
}

func waitGone(procs []Proc, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		left := false
		for _, p := range procs {
			if p.Alive() {
				left = true
				break
			}
		}
		if !left {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// strays finds running processes the state file may not know about (a lab
// that crashed before recording them): those whose network namespace is
// one of nsInodes, and those whose command line mentions dir.
func strays(dir string, nsInodes map[uint64]bool) []Proc {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	mine := ancestors()
	var out []Proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || mine[pid] || pid <= 1 {
			continue
		}
		state, start, err := procStat(pid)
		if err != nil || state == 'Z' || state == 'X' {
			continue
		}
		match := false
		if len(nsInodes) > 0 {
			var st syscall.Stat_t
			if syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) == nil && nsInodes[st.Ino] {
				match = true
			}
		}
		var args []string
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && len(b) > 0 {
			args = strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
			if !match && dir != "" && mentions(args, dir) {
				match = true
			}
		}
		if match {
			out = append(out, Proc{PID: pid, Start: start, Args: args})
		}
	}
	return out
}

// ancestors returns this process and its parents: never strays.
func ancestors() map[int]bool {
	out := map[int]bool{}
	for pid := os.Getpid(); pid > 1 && !out[pid]; {
		out[pid] = true
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			break
		}
		i := bytes.LastIndexByte(b, ')')
		f := strings.Fields(string(b[i+1:]))
		if i < 0 || len(f) < 2 {
			break
		}
		if pid, err = strconv.Atoi(f[1]); err != nil {
			break
		}
	}
	return out
}

// mentions reports whether an argument is a path inside dir, as the
// manager's, agents' and applications' are. Naming dir itself (--dir DIR)
// is not enough: that is how a user's own commands, and sudo running them,
// name the lab.
func mentions(args []string, dir string) bool {
	for _, a := range args {
		if _, v, ok := strings.Cut(a, "="); ok && strings.HasPrefix(a, "-") {
			a = v
		}
		if strings.HasPrefix(a, dir+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

// nsInode returns the inode of the namespace mounted at path.
func nsInode(path string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// listeners counts the TCP sockets in LISTEN state in the network namespace
// of process pid.
func listeners(pid int) (int, error) {
	n := 0
	var errs error
	for _, f := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			errs = errors.Join(errs, err)
			continue
		}
		lines := strings.Split(string(b), "\n")
		for _, l := range lines[min(1, len(lines)):] {
			fs := strings.Fields(l)
			if len(fs) > 3 && fs[3] == "0A" {
				n++
			}
		}
	}
	return n, errs
}
