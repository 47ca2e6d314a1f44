package lab_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/apiclient"
	"github.com/bulkhead/bulkhead/internal/policy"
)

// testL7 is issue 7's must-show with real clients inside the workloads:
// examples/lab-l7-policy.yaml lets only TLS 1.2 and later reach web1's
// non-standard port 8443 (curl with TLS 1.0/1.1 is dropped after the
// server's hello, 1.2 and 1.3 get their page), and only HTTPS reach
// jump1's port 443, where an SSH server listens (OpenSSH's ssh is dropped
// once the server's banner says SSH, while port 22 still works). The drop
// and flow records carry the L7 rules' ids, the agents log their queue
// readers' counters, and the revision before is restored at the end.
func (e *e2e) testL7(t *testing.T) {
	if _, err := exec.LookPath("ssh"); err != nil {
		t.Skipf("needs OpenSSH's ssh (openssh-client): %v", err)
	}
	ctx := context.Background()
	revs, err := e.client.Revisions(ctx, 1)
	if err != nil || len(revs) == 0 {
		t.Fatalf("revisions: %v %v", revs, err)
	}
	before := revs[0].Number

	curl := func(args ...string) (int, string) {
		return e.exec("shopper1", append([]string{"curl", "-sS", "--max-time", "5", "--cacert", e.st.LabCA}, args...)...)
	}
	const url8443 = "https://web1.lab.test:8443/"
	// OpenSSL 3 refuses TLS 1.0 and 1.1 at its default security level;
	// the old terminals' clients do not.
	tls11 := []string{"--tlsv1.0", "--tls-max", "1.1", "--ciphers", "DEFAULT@SECLEVEL=0"}
	ssh := func(port int) (int, string) {
		return e.exec("shopper1", "ssh", "-v", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
			"-o", "ConnectTimeout=4", "-p", strconv.Itoa(port), "admin@jump1.lab.test", "true")
	}
	// Without the policy both servers answer these very clients, so what
	// fails later is the policy's doing.
	if code, out := curl(append(tls11, "-o", "/dev/null", "-w", "%{http_code}", url8443)...); code != 0 || strings.TrimSpace(out) != "200" {
		t.Fatalf("before the policy, curl with TLS 1.1 to %s: exit %d, %q; want 200", url8443, code, out)
	}
	if code, out := ssh(443); code != 255 || !strings.Contains(out, "Permission denied") {
		t.Fatalf("before the policy, ssh -p 443 to jump1: exit %d; want 255 with the server's refusal of the key-less login:\n%s", code, readTailString(out, 8))
	}

	out, err := e.cmd("apply", "-f", filepath.Join(e.root, "examples", "lab-l7-policy.yaml"), "-m", "e2e: TLS 1.2 and HTTPS only")
	if err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	if revs, err = e.client.Revisions(ctx, 1); err != nil || len(revs) == 0 {
		t.Fatalf("revisions: %v %v", revs, err)
	}
	rev := revs[0].Number
	rolledBack := false
	t.Cleanup(func() {
		if !rolledBack {
			if _, err := e.client.Rollback(context.Background(), before); err != nil {
				t.Errorf("rollback to revision %d: %v", before, err)
			}
		}
	})
	e.waitRealized(t, rev)
	policyAt := time.Now()
	detail, err := e.client.Revision(ctx, rev)
	if err != nil {
		t.Fatal(err)
	}
	id := func(rule string) uint32 {
		n := detail.Set.RuleIDs[policy.RuleKey("l7", rule)]
		if n == 0 {
			t.Fatalf("revision %d has no id for rule l7/%s", rev, rule)
		}
		return n
	}
	tls12, legacyOther, httpsOnly, no443 := id("legacy-port-tls12"), id("legacy-port-other"), id("https-only"), id("no-other-443")

	// The dropped attempts wait out their timeouts: run every probe at once.
	var wg sync.WaitGroup
	wg.Go(func() {
		// The TCP handshake and the ClientHello pass (the connection is
		// L7 pending); the ServerHello says TLS 1.1, the reader decides
		// "drop", and curl waits for a hello that never comes.
		code, out := curl(append(tls11, "-v", "-o", "/dev/null", url8443)...)
		switch {
		case code != 28:
			t.Errorf("curl --tlsv1.0 --tls-max 1.1 %s: exit %d; want 28 (timed out in the handshake)\n%s", url8443, code, readTailString(out, 12))
		case !strings.Contains(out, "Connected to web1.lab.test") || !strings.Contains(out, "(OUT), TLS handshake, Client hello"):
			t.Errorf("curl --tlsv1.0 --tls-max 1.1: no TCP connection or no ClientHello sent; want the drop after the handshake started:\n%s", readTailString(out, 12))
		case strings.Contains(out, "(IN), TLS handshake, Server hello"):
			t.Errorf("curl --tlsv1.0 --tls-max 1.1: the ServerHello reached the client; want it dropped:\n%s", readTailString(out, 12))
		}
	})
	for _, v := range [][]string{{"--tlsv1.2", "--tls-max", "1.2"}, {"--tlsv1.3"}} {
		wg.Go(func() {
			if code, out := curl(append(v, "-o", "/dev/null", "-w", "%{http_code}", url8443)...); code != 0 || strings.TrimSpace(out) != "200" {
				t.Errorf("curl %s %s: exit %d, %q; want HTTP 200", strings.Join(v, " "), url8443, code, out)
			}
		})
	}
	wg.Go(func() {
		// The server speaks first: its banner is the first payload, the
		// reader finds SSH, and the banner is dropped.
		code, out := ssh(443)
		if code != 255 || !strings.Contains(out, "Connection established") || !strings.Contains(out, "timed out during banner exchange") {
			t.Errorf("ssh -p 443 to jump1: exit %d; want 255 after the TCP connection, timed out during the banner exchange:\n%s", code, readTailString(out, 8))
		}
		if strings.Contains(out, "Remote protocol version") {
			t.Errorf("ssh -p 443 to jump1: the server's banner reached the client:\n%s", readTailString(out, 8))
		}
	})
	wg.Go(func() {
		// The rule is about port 443 only: SSH on 22 is untouched.
		if code, out := ssh(22); code != 255 || !strings.Contains(out, "Permission denied") {
			t.Errorf("ssh -p 22 to jump1 under the L7 policy: exit %d; want the server's refusal as before:\n%s", code, readTailString(out, 8))
		}
	})
	wg.Wait()

	// jump1's 443 has no HTTPS server in the lab; what an HTTPS client
	// would get there is the evaluator's answer, from which the agents'
	// rules are compiled.
	for _, c := range []struct {
		app     string
		verdict string
		rule    uint32
	}{{"APP_HTTPS", "allow", httpsOnly}, {"APP_HTTP2", "allow", httpsOnly}, {"APP_SSH", "drop", no443}} {
		r, err := e.client.Eval(ctx, api.EvalRequest{From: "10.77.7.10", To: "10.77.0.22", Proto: "tcp", Port: 443, App: c.app})
		if err != nil {
			t.Fatal(err)
		}
		if r.Verdict != c.verdict || r.RuleID != c.rule {
			t.Errorf("eval shopper1 -> jump1:443 %s: %s by rule %d (%s); want %s by rule %d", c.app, r.Verdict, r.RuleID, r.Rule, c.verdict, c.rule)
		}
	}

	// The records reach the manager with the rules the reader's walk chose.
	since := policyAt.Add(-time.Second).Format(time.RFC3339)
	for _, c := range []struct {
		what string
		q    apiclient.FlowQuery
	}{
		{"drop record of TLS 1.1 to web1:8443", apiclient.FlowQuery{From: "shopper1", To: "web1", Port: 8443, Verdict: "drop", Rule: legacyOther}},
		{"flow record of TLS 1.2+ to web1:8443", apiclient.FlowQuery{From: "shopper1", To: "web1", Port: 8443, Verdict: "allow", Rule: tls12}},
		{"drop record of SSH to jump1:443", apiclient.FlowQuery{From: "shopper1", To: "jump1", Port: 443, Verdict: "drop", Rule: no443}},
	} {
		c.q.Since, c.q.Limit = since, 10
		deadline := time.Now().Add(30 * time.Second)
		for {
			fl, err := e.client.Flows(ctx, c.q)
			if err != nil {
				t.Fatal(err)
			}
			if len(fl) > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("no %s with rule %d within 30s", c.what, c.q.Rule)
				break
			}
			time.Sleep(time.Second)
		}
	}

	r, err := e.client.Rollback(ctx, before)
	if err != nil {
		t.Fatalf("rollback to revision %d: %v", before, err)
	}
	rolledBack = true
	e.waitRealized(t, r.Revision)
	// With no L7 rule left each agent stops its reader and logs its
	// counters: hv1's (shopper1 and web1) decided connections.
	decided := map[string]int{}
	for _, h := range e.st.Hosts {
		if h.Agent == nil {
			t.Fatalf("host %s: the lab's state records no agent", h.Name)
		}
		b, err := os.ReadFile(h.Agent.Log)
		if err != nil {
			t.Fatal(err)
		}
		n, ok := readerDecided(string(b), policyAt)
		if !ok {
			t.Errorf("agent %s: no \"L7 queue reader stopped\" line with counters after the rollback; log:\n%s", h.Name, readTailString(string(b), 10))
		}
		decided[h.Name] = n
	}
	if decided["hv1"] == 0 {
		t.Errorf("agent hv1's L7 reader decided no connection: %v", decided)
	}
	t.Logf("L7 readers' decided connections: %v", decided)
}

var decidedRE = regexp.MustCompile(`Decided:(\d+)`)

// readerDecided finds the last "L7 queue reader stopped" line logged after
// since and returns its count of decided connections.
func readerDecided(log string, since time.Time) (int, bool) {
	n, ok := 0, false
	for _, l := range strings.Split(log, "\n") {
		ts, found := strings.CutPrefix(l, "time=")
		if !found || !strings.Contains(l, `msg="L7 queue reader stopped"`) {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, strings.Fields(ts)[0])
		if err != nil || at.Before(since) {
			continue
		}
		if m := decidedRE.FindStringSubmatch(l); m != nil {
			n, _ = strconv.Atoi(m[1])
			ok = true
		}
	}
	return n, ok
}
