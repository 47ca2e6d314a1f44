package apps

import (
	"context"
	"encoding/json"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Each RDSH user's connections leave from that user's source port range,
// which is how the server side (and the firewall) can tell who made them.
func TestRDSHUsersHaveTheirOwnPorts(t *testing.T) {
	webLogs, webLog := newLog()
	web := HTTPConfig{}
	webAddr := startServer(t, &web.Env, webLog, func(ctx context.Context) error { return RunHTTP(ctx, web) })["tcp"]
	sshAddr, sshLog := startSSH(t)
	ldapAddr, ldapLog := startLDAP(t)

	logs, log := newLog()
	cfg := RDSHConfig{
		Pace: Pace{Interval: Duration(30 * time.Millisecond), Count: 4, Timeout: Duration(5 * time.Second)},
		Users: []RDSHUser{
			{Name: "alice", Ports: "24100-24199", Password: "alice-pw", Actions: []RDSHAction{{HTTP: "http://" + webAddr + "/about"}, {LDAP: ldapAddr}}},
			{Name: "carol", Ports: "24200-24299", Password: "carol-pw", Actions: []RDSHAction{{SSH: sshAddr, Command: "whoami"}}},
		},
	}
	cfg.SetDefaults()
	cfg.Log = log
	runClient(t, 60*time.Second, func(ctx context.Context) error { return RunRDSH(ctx, cfg) })

	inRange := func(remote string, lo, hi int) bool {
		_, p, err := net.SplitHostPort(remote)
		n, _ := strconv.Atoi(p)
		return err == nil && n >= lo && n <= hi
	}
	remoteRE := regexp.MustCompile(`remote=(\S+)`)
	check := func(what string, lines []string, lo, hi int) {
		t.Helper()
		if len(lines) == 0 {
			t.Fatalf("no %s", what)
		}
		for _, l := range lines {
			m := remoteRE.FindStringSubmatch(l)
			if m == nil || !inRange(m[1], lo, hi) {
				t.Errorf("%s from outside %d-%d: %s", what, lo, hi, l)
			}
		}
	}
	carol := sshLog.lines("msg=login", "user=carol", "ok=true")
	check("carol's ssh logins", carol, 24200, 24299)
	sshLog.waitFor(t, time.Second, "msg=exec", "user=carol", "cmd=whoami")
	alice := append(webLogs.lines("msg=request", "uri=/about"), ldapLog.lines("msg=bind", "uid=alice")...)
	check("alice's connections", alice, 24100, 24199)
	if len(carol)+len(alice) < 8 {
		t.Errorf("%d actions seen by the servers, want 8 (4 rounds, 2 users)", len(carol)+len(alice))
	}
	logs.waitFor(t, time.Second, "msg=\"ssh exec\"", "user=carol", "src=", "out=carol")
	logs.waitFor(t, time.Second, "msg=\"session end\"", "user=alice", "ports=24100-24199")
}

func TestRDSHValidate(t *testing.T) {
	cfg := RDSHConfig{Pace: once(), Users: []RDSHUser{
		{Name: "alice", Ports: "20000-20999", Actions: []RDSHAction{{HTTP: "http://hr.lab.test/"}}},
		{Name: "bob", Ports: "20500-21499", Actions: []RDSHAction{{SSH: "db1:22"}}},
		{Name: "carl", Ports: "30000-30003", Actions: []RDSHAction{{HTTP: "http://a/", LDAP: "dir1:389"}}},
	}}
	err := cfg.Validate()
	for _, want := range []string{
		"users[1].ports: 20500-21499 overlaps users[0]'s 20000-20999",
		"users[1].password: needed for ssh actions",
		"users[2].ports: 30000-30003: want at least 16 ports",
		"users[2].actions[0]: want exactly one of http, ssh, ldap",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("no %q in:\n%v", want, err)
		}
	}
}

// Main decodes strictly and dispatches by name.
func TestMainDispatch(t *testing.T) {
	if len(Names()) != 19 {
		t.Errorf("%d apps: %v", len(Names()), Names())
	}
	ctx := context.Background()
	for _, c := range []struct{ name, cfg, want string }{
		{"nosuch", `{}`, `unknown application "nosuch"`},
		{"db", `{"port": 5432, "colour": "red"}`, `unknown field "colour"`},
		{"db", `{"port": 70000}`, "port: port 70000 out of range"},
		{"dns", `{"port": 0, "zones": []}`, "zones: at least one zone"},
		{"shopper", `{"interval": "1ms", "urls": ["ftp://x/"]}`, "interval: 1ms is below the minimum"},
		{"db", `{"port": 1} {"port": 2}`, "data after the JSON object"},
	} {
		err := Main(ctx, c.name, []byte(c.cfg))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Main(%s, %s): %v, want %q", c.name, c.cfg, err, c.want)
		}
	}
	// A real run: the db on a free loopback port, stopped by its context.
	ctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := Main(ctx, "db", []byte(`{"port": 0, "bind": "127.0.0.1"}`)); err != nil {
		t.Fatalf("Main(db): %v", err)
	}
}

// Every app's configuration survives the JSON the lab passes to Main.
func TestConfigsRoundTripJSON(t *testing.T) {
	for _, name := range Names() {
		a, _ := Lookup(name)
		cfg := a.NewConfig()
		if d, ok := cfg.(Defaulter); ok {
			d.SetDefaults()
		}
		j, err := json.Marshal(cfg)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		back, err := Decode(name, j)
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, j)
		}
		j2, _ := json.Marshal(back)
		if string(j) != string(j2) {
			t.Errorf("%s: JSON changed:\n%s\n%s", name, j, j2)
		}
	}
}

func TestPaceAndLimiter(t *testing.T) {
	p := Pace{Interval: Duration(100 * time.Millisecond), Jitter: Duration(50 * time.Millisecond)}
	for range 200 {
		if d := p.next(); d < 50*time.Millisecond || d > 150*time.Millisecond {
			t.Fatalf("next %s outside 50-150ms", d)
		}
	}
	rounds := 0
	start := time.Now()
	Pace{Interval: Duration(20 * time.Millisecond), Count: 3}.loop(context.Background(), func(context.Context, int) { rounds++ })
	if rounds != 3 || time.Since(start) < 40*time.Millisecond {
		t.Fatalf("%d rounds in %s, want 3 in at least 40ms", rounds, time.Since(start))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := (Pace{Interval: Duration(time.Hour)}).loop(ctx, func(context.Context, int) { t.Fatal("ran after cancel") }); err != nil {
		t.Fatal(err)
	}
	if _, err := parsePortList("1-4000,5000-5200", 4096); err == nil {
		t.Fatal("4201 ports accepted with a limit of 4096")
	}
}
