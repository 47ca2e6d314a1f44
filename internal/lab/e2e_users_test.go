package lab_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/lab/apps"
	"github.com/bulkhead/bulkhead/internal/netlab"
	"github.com/bulkhead/bulkhead/internal/policy"
)

// testUsers is issue 7's user must-show: two people on the RDSH host, and
// only the one in the directory's hr group reaches the HR application.
// The users and groups come from the lab's own LDAP server (dir1) through
// `bulkhead source add ldap`, rdsh1's sessions and their source-port
// ranges through `bulkhead identity events`, and the check is real HTTP
// from inside rdsh1, bound to ports in each user's range. The revision
// before, the sources and the sessions are restored at the end.
func (e *e2e) testUsers(t *testing.T) {
	ctx := context.Background()
	var dir apps.LDAPConfig
	e.appConfig(t, "dir1", "ldap", &dir)
	var rdsh apps.RDSHConfig
	e.appConfig(t, "rdsh1", "rdsh", &rdsh)
	rdshIP := e.workloadIP(t, "rdsh1")
	hr := map[string]bool{}
	for _, g := range dir.Groups {
		if g.Name == "hr" {
			for _, m := range g.Members {
				hr[m] = true
			}
		}
	}
	// Two of rdsh1's users: one in hr, one not, and their port ranges.
	var in, out apps.RDSHUser
	for _, u := range rdsh.Users {
		switch {
		case hr[u.Name] && in.Name == "":
			in = u
		case !hr[u.Name] && out.Name == "":
			out = u
		}
	}
	if in.Name == "" || out.Name == "" {
		t.Fatalf("rdsh1's users %v: want one in dir1's group hr (%v) and one not", rdsh.Users, hr)
	}

	// The directory, synced from dir1 with the scenario's service account.
	pw := filepath.Join(t.TempDir(), "ldap.pass")
	if err := os.WriteFile(pw, []byte(dir.AdminPassword), 0o600); err != nil {
		t.Fatal(err)
	}
	// The lab's manager runs in the root namespace, which has no route
	// into the lab's network: it reaches dir1 through a forward, as a
	// manager on a management network would reach a domain controller.
	ldapAddr := e.forward(t, "dir1", fmt.Sprintf("%s:%d", e.workloadIP(t, "dir1"), dir.Port))
	if o, err := e.cmd("source", "add", "ldap", "lab-dir", "--url", "ldap://"+ldapAddr, "--interval", "0",
		"--bind-dn", "cn=admin,"+dir.BaseDN, "--password-file", pw, "--base-dn", dir.BaseDN); err != nil {
		t.Fatalf("source add ldap: %v\n%s", err, o)
	}
	t.Cleanup(func() {
		if o, err := e.cmd("source", "delete", "lab-dir"); err != nil {
			t.Errorf("source delete lab-dir: %v\n%s", err, o)
		}
	})
	if o, err := e.cmd("source", "sync", "lab-dir"); err != nil {
		t.Fatalf("source sync lab-dir: %v\n%s", err, o)
	}
	var users []api.DirectoryUser
	e.cmdJSON(t, &users, "identity", "users", "-o", "json")
	groupsOf := map[string][]string{}
	for _, u := range users {
		groupsOf[u.Name] = u.Groups
	}
	if len(users) != len(dir.People) {
		t.Errorf("identity users: %d users; want dir1's %d people: %v", len(users), len(dir.People), groupsOf)
	}
	if !slices.Contains(groupsOf[in.Name], "hr") || !slices.Contains(groupsOf[in.Name], "staff") {
		t.Errorf("identity users: %s's groups %v; want hr and, nested, staff", in.Name, groupsOf[in.Name])
	}
	if _, ok := groupsOf[out.Name]; !ok || slices.Contains(groupsOf[out.Name], "hr") {
		t.Errorf("identity users: %s (synced %v) groups %v; want synced, not in hr", out.Name, ok, groupsOf[out.Name])
	}

	// rdsh1's sessions, as its logon events would say.
	var events strings.Builder
	for _, u := range rdsh.Users {
		fmt.Fprintf(&events, `{"user":%q,"ip":%q,"ports":%q}`+"\n", u.Name, rdshIP, u.Ports)
	}
	if o, err := e.cmdIn(events.String(), "identity", "events", "-"); err != nil || !strings.Contains(o, fmt.Sprintf("%d sessions started", len(rdsh.Users))) {
		t.Fatalf("identity events (logons): %v\n%s", err, o)
	}
	t.Cleanup(func() {
		var logoff strings.Builder
		end := time.Now().UTC().Format(time.RFC3339Nano)
		for _, u := range rdsh.Users {
			fmt.Fprintf(&logoff, `{"user":%q,"ip":%q,"ports":%q,"end":%q}`+"\n", u.Name, rdshIP, u.Ports, end)
		}
		if o, err := e.cmdIn(logoff.String(), "identity", "events", "-"); err != nil || !strings.Contains(o, fmt.Sprintf("%d ended", len(rdsh.Users))) {
			t.Errorf("identity events (logoffs): %v\n%s", err, o)
		}
	})

	revs, err := e.client.Revisions(ctx, 1)
	if err != nil {
		t.Fatalf("revisions: %v", err)
	}
	// undo restores the revision before, or with none (the subtest run
	// alone) deletes what the example made; it returns the new revision.
	undo := func() (int64, error) {
		if len(revs) > 0 {
			r, err := e.client.Rollback(context.Background(), revs[0].Number)
			if err != nil {
				return 0, fmt.Errorf("rollback to revision %d: %w", revs[0].Number, err)
			}
			return r.Revision, nil
		}
		var rev int64
		for _, k := range [][2]string{{"policy", "hr-portal"}, {"group", "hr-staff"}, {"group", "hr-app"}} {
			var r struct{ Revision int64 }
			o, err := e.cmdStdout("delete", k[0], k[1], "-o", "json")
			if err == nil {
				err = json.Unmarshal([]byte(o), &r)
			}
			if err != nil {
				return 0, fmt.Errorf("delete %s %s: %w\n%s", k[0], k[1], err, o)
			}
			if rev == 0 {
				rev = r.Revision // deleting the groups changes no host's span
			}
		}
		return rev, nil
	}
	// Real connections from inside rdsh1, each from a few ports of one
	// user's range (the scenario's own sessions use the range too, so
	// curl may need to try more than one).
	curl := func(u apps.RDSHUser) (int, string) {
		lo, _, _ := strings.Cut(u.Ports, "-")
		p, err := strconv.Atoi(lo)
		if err != nil {
			return -1, fmt.Sprintf("%s's ports %q: %v", u.Name, u.Ports, err)
		}
		return e.exec("rdsh1", "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
			"--local-port", fmt.Sprintf("%d-%d", p+500, p+540), "http://hr1.lab.test/")
	}
	// Without the policy both users get the page, so what fails later is
	// the policy's doing.
	for _, u := range []apps.RDSHUser{in, out} {
		if code, o := curl(u); code != 0 || strings.TrimSpace(o) != "200" {
			t.Fatalf("before the policy, %s (ports %s) -> hr1:80: exit %d, %q; want HTTP 200", u.Name, u.Ports, code, o)
		}
	}
	if o, err := e.cmd("apply", "-f", filepath.Join(e.root, "examples", "lab-users-policy.yaml"), "-m", "e2e: HR portal for hr only"); err != nil {
		t.Fatalf("apply: %v\n%s", err, o)
	}
	applied, err := e.client.Revisions(ctx, 1)
	if err != nil || len(applied) == 0 {
		t.Fatalf("revisions: %v %v", applied, err)
	}
	rev := applied[0].Number
	undone := false
	t.Cleanup(func() {
		if !undone {
			if _, err := undo(); err != nil {
				t.Error(err)
			}
		}
	})
	e.waitHostRealized(t, e.hostOf(t, "hr1"), rev)
	policyAt := time.Now()
	detail, err := e.client.Revision(ctx, rev)
	if err != nil {
		t.Fatal(err)
	}
	allowID, dropID := detail.Set.RuleIDs[policy.RuleKey("hr-portal", "hr-staff")], detail.Set.RuleIDs[policy.RuleKey("hr-portal", "others")]
	if allowID == 0 || dropID == 0 {
		t.Fatalf("revision %d: rule ids hr-portal/hr-staff %d, hr-portal/others %d", rev, allowID, dropID)
	}

	var wg sync.WaitGroup
	wg.Go(func() {
		if code, o := curl(in); code != 0 || strings.TrimSpace(o) != "200" {
			t.Errorf("%s (ports %s, in hr) -> hr1:80: exit %d, %q; want HTTP 200", in.Name, in.Ports, code, o)
		}
	})
	wg.Go(func() {
		if code, o := curl(out); code != 28 {
			t.Errorf("%s (ports %s, not in hr) -> hr1:80: exit %d, %q; want 28 (timed out: dropped)", out.Name, out.Ports, code, o)
		}
	})
	wg.Wait()
	// The rule is about hr1's port 80 only: its SSH answers everyone.
	if code, o := e.exec("rdsh1", "timeout", "3", "bash", "-c", "exec 3<>/dev/tcp/hr1.lab.test/22"); code != 0 {
		t.Errorf("rdsh1 -> hr1:22 under the users policy: exit %d, %q; want a connection", code, o)
	}

	// The records name the user and the rule that decided.
	since := policyAt.Add(-time.Second).Format(time.RFC3339)
	for _, c := range []struct {
		user, verdict string
		rule          uint32
	}{{in.Name, "allow", allowID}, {out.Name, "drop", dropID}} {
		// Drop records are folded per window on the agent and reach the
		// manager with its next report: in this lab that took up to ~35s.
		waitStart := time.Now()
		deadline := waitStart.Add(60 * time.Second)
		for {
			var fl []map[string]any
			e.cmdJSON(t, &fl, "flows", "--user", c.user, "--to", "hr1", "--port", "80", "--since", since, "-o", "json")
			if slices.ContainsFunc(fl, func(r map[string]any) bool {
				return r["verdict"] == c.verdict && fmt.Sprint(r["ruleId"]) == fmt.Sprint(c.rule)
			}) {
				t.Logf("%s record of %s by rule %d after %s", c.verdict, c.user, c.rule, time.Since(waitStart).Round(time.Second))
				break
			}
			if time.Now().After(deadline) {
				b, _ := json.Marshal(fl)
				var all []map[string]any
				e.cmdJSON(t, &all, "flows", "--to", "hr1", "--port", "80", "--since", since, "-o", "json")
				b2, _ := json.Marshal(all)
				t.Errorf("flows --user %s --to hr1: no %s record by rule %d within 60s; got %s\nall records to hr1:80: %s", c.user, c.verdict, c.rule, b, b2)
				break
			}
			time.Sleep(time.Second)
		}
	}

	r, err := undo()
	if err != nil {
		t.Fatal(err)
	}
	undone = true
	e.waitHostRealized(t, e.hostOf(t, "hr1"), r)
}

// appConfig decodes the configuration the lab wrote for workload's app.
func (e *e2e) appConfig(t *testing.T, workload, app string, v any) {
	t.Helper()
	for _, a := range e.st.Apps {
		if a.Workload == workload && a.App == app {
			b, err := os.ReadFile(a.Config)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, v); err != nil {
				t.Fatalf("%s: %v", a.Config, err)
			}
			return
		}
	}
	t.Fatalf("the lab's state has no app %s on %s", app, workload)
}

func (e *e2e) workloadIP(t *testing.T, name string) string {
	t.Helper()
	for _, w := range e.st.Workloads {
		if w.Name == name {
			return w.IPv4
		}
	}
	t.Fatalf("the lab's state has no workload %s", name)
	return ""
}

func (e *e2e) hostOf(t *testing.T, workload string) string {
	t.Helper()
	for _, w := range e.st.Workloads {
		if w.Name == workload {
			return w.Host
		}
	}
	t.Fatalf("the lab's state has no workload %s", workload)
	return ""
}

// forward listens on the root namespace's loopback and joins each
// connection to one made from inside workload's namespace to target, and
// returns the address it listens on.
func (e *e2e) forward(t *testing.T, workload, target string) string {
	t.Helper()
	var nsName string
	for _, w := range e.st.Workloads {
		if w.Name == workload {
			nsName = w.NetNS
		}
	}
	ns, err := netlab.OpenNamespace(nsName)
	if err != nil {
		t.Fatalf("forward to %s in %s: %v", target, workload, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		ns.Close()
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		ns.Close()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			var up net.Conn
			if err := ns.Do(func() (err error) {
				up, err = net.DialTimeout("tcp", target, 5*time.Second)
				return err
			}); err != nil {
				t.Logf("forward to %s in %s: %v", target, workload, err)
				c.Close()
				continue
			}
			// Each direction ends the other: the manager's LDAP client
			// closes its connection after each sync.
			wg.Go(func() { io.Copy(up, c); up.Close() })
			wg.Go(func() { io.Copy(c, up); c.Close() })
		}
	})
	return ln.Addr().String()
}

// cmdIn runs the binary with stdin and returns its combined output.
func (e *e2e) cmdIn(stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := exec.CommandContext(ctx, e.bin, args...)
	c.Env, c.Dir, c.Stdin = e.env, e.root, strings.NewReader(stdin)
	out, err := c.CombinedOutput()
	return string(out), err
}
