package lab_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// testFQDN is issue 7's FQDN must-show with real clients:
// examples/lab-fqdn-policy.yaml lets partner1 reach only *.example.test on
// port 80 (and the lab's DNS server). curl inside partner1 resolves
// store.example.test through dns1 (a CNAME of edge.example.test) and gets
// the page; www.other.test and api1 by address, both reachable before, time
// out. edge.example.test moves between web1 and web2 every 15s with a TTL
// of 2s: once it has moved, a new lookup reaches the new server at once,
// the old address still connects until TTL + the lab agents' grace (3s)
// have passed, then it is dropped. hv2's agent logs the snooper's counters when the revision before is
// restored at the end.
func (e *e2e) testFQDN(t *testing.T) {
	ctx := context.Background()
	revs, err := e.client.Revisions(ctx, 1)
	if err != nil || len(revs) == 0 {
		t.Fatalf("revisions: %v %v", revs, err)
	}
	before := revs[0].Number

	// curl prints its result on a line of its own, whatever it says on
	// stderr: the HTTP status (000 without an answer) and the address it
	// connected to.
	curl := func(args ...string) (exit int, status, addr, out string) {
		exit, out = e.exec("partner1", append([]string{"curl", "-4", "-sS", "-o", "/dev/null",
			"-w", `\nresult %{http_code} %{remote_ip}\n`, "--connect-timeout", "3", "--max-time", "5"}, args...)...)
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "result" {
				status = f[1]
				if len(f) > 2 {
					addr = f[2]
				}
			}
		}
		return exit, status, addr, out
	}
	const (
		store   = "http://store.example.test/"
		other   = "http://www.other.test/"
		api1URL = "http://10.77.2.10:8080/api/products"
	)
	// Without the policy all three answer partner1, so what fails later
	// is the policy's doing.
	for _, u := range []string{store, other, api1URL} {
		if exit, status, _, out := curl(u); exit != 0 || status == "000" {
			t.Fatalf("before the policy, curl %s from partner1: exit %d; want an HTTP answer:\n%s", u, exit, readTailString(out, 4))
		}
	}

	agentLog := ""
	for _, h := range e.st.Hosts {
		if h.Name == "hv2" && h.Agent != nil {
			agentLog = h.Agent.Log
		}
	}
	if agentLog == "" {
		t.Fatal("the lab's state records no agent for hv2, partner1's host")
	}
	logAt := fileSize(t, agentLog)

	out, err := e.cmd("apply", "-f", filepath.Join(e.root, "examples", "lab-fqdn-policy.yaml"), "-m", "e2e: partners reach *.example.test only")
	if err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	if revs, err = e.client.Revisions(ctx, 1); err != nil || len(revs) == 0 {
		t.Fatalf("revisions: %v %v", revs, err)
	}
	rolledBack := false
	t.Cleanup(func() {
		if !rolledBack {
			if _, err := e.client.Rollback(context.Background(), before); err != nil {
				t.Errorf("rollback to revision %d: %v", before, err)
			}
		}
	})
	e.waitHostRealized(t, "hv2", revs[0].Number)

	// The answer of the lookup opens the connection: the name through its
	// CNAME to whichever web server edge.example.test names now.
	exit, status, first, out := curl(store)
	if exit != 0 || status != "200" {
		t.Fatalf("curl %s from partner1 under the policy: exit %d, status %q; want 200:\n%s", store, exit, status, readTailString(out, 4))
	}
	webs := map[string]string{"10.77.1.10": "web1", "10.77.1.11": "web2"}
	if webs[first] == "" {
		t.Fatalf("curl %s connected to %q; want web1's or web2's address", store, first)
	}
	t.Logf("store.example.test -> edge.example.test -> %s (%s): 200", first, webs[first])

	// The dropped attempts wait out their timeouts: both at once.
	var wg sync.WaitGroup
	for _, u := range []string{other, api1URL} {
		wg.Go(func() {
			if exit, status, _, out := curl(u); exit != 28 || status != "000" {
				t.Errorf("curl %s from partner1 under the policy: exit %d, status %q; want 28 (connection timed out: dropped):\n%s", u, exit, status, readTailString(out, 4))
			}
		})
	}
	wg.Wait()

	// Wait for the move (at most one 15s period), looking the name up
	// again every second as a client would after the 2s TTL.
	var moved time.Time
	deadline := time.Now().Add(20 * time.Second)
	for moved.IsZero() {
		if time.Now().After(deadline) {
			t.Fatalf("edge.example.test still answers %s after 20s; it moves every 15s", first)
		}
		time.Sleep(time.Second)
		exit, status, addr, out := curl(store)
		switch {
		case exit != 0 || status != "200":
			t.Fatalf("curl %s from partner1 while waiting for the move: exit %d, status %q; want 200:\n%s", store, exit, status, readTailString(out, 4))
		case addr != first:
			if webs[addr] == "" {
				t.Fatalf("curl %s connected to %q; want web1's or web2's address", store, addr)
			}
			moved = time.Now()
			t.Logf("moved: store.example.test -> %s (%s): 200 after a new lookup", addr, webs[addr])
		}
	}
	// The old address's last answer came at the poll before: for TTL +
	// grace after it the old server is still allowed (a client may use an
	// answer a little past its TTL). Only logged: under load the poll and
	// this curl can take most of those 5 s.
	if exit, status, _, _ := curl("--resolve", "store.example.test:80:"+first, store); exit != 0 || status != "200" {
		t.Logf("curl %s at its old address %s %s after the move: exit %d, status %q (the grace had run out already)",
			store, first, time.Since(moved).Round(100*time.Millisecond), exit, status)
	}
	// The last answer naming the old address came before the move: its
	// element times out after TTL (2s) + grace (3s); one second more for
	// the poll's own duration. The name moves back 15s after it moved.
	time.Sleep(time.Until(moved.Add(6 * time.Second)))
	if exit, status, _, out := curl("--resolve", "store.example.test:80:"+first, store); exit != 28 || status != "000" {
		t.Errorf("curl %s at its old address %s, %s after the move: exit %d, status %q; want 28 (dropped: the address expired)\n%s",
			store, first, time.Since(moved).Round(time.Second), exit, status, readTailString(out, 4))
	}
	if exit, status, _, out := curl(store); exit != 0 || status != "200" {
		t.Errorf("curl %s after the old address expired: exit %d, status %q; want 200:\n%s", store, exit, status, readTailString(out, 4))
	}

	r, err := e.client.Rollback(ctx, before)
	if err != nil {
		t.Fatalf("rollback to revision %d: %v", before, err)
	}
	rolledBack = true
	e.waitHostRealized(t, "hv2", r.Revision)
	if exit, status, _, out := curl(api1URL); exit != 0 || status == "000" {
		t.Errorf("after the rollback, curl %s from partner1: exit %d; want an HTTP answer again:\n%s", api1URL, exit, readTailString(out, 4))
	}

	// With no FQDN rule left hv2's agent stops its snooper and logs the
	// counters: the answers to partner1, both of the moving name's
	// addresses added.
	var stats string
	deadline = time.Now().Add(5 * time.Second)
	for {
		stats = snooperStopped(t, agentLog, logAt)
		if stats != "" || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if stats == "" {
		b, _ := os.ReadFile(agentLog)
		t.Fatalf("agent hv2: no \"DNS snooper stopped\" line with counters after the rollback; log:\n%s", readTailString(string(b), 10))
	}
	t.Logf("hv2's DNS snooper: %s", stats)
	for _, c := range []struct {
		re  *regexp.Regexp
		min int
	}{
		{snoopAnswersRE, 3},
		{cacheAddedRE, 2},
	} {
		m := c.re.FindStringSubmatch(stats)
		if m == nil {
			t.Errorf("hv2's snooper counters %q: no %s", stats, c.re)
			continue
		}
		if n, _ := strconv.Atoi(m[1]); n < c.min {
			t.Errorf("hv2's snooper counters: %s is %d; want at least %d", c.re, n, c.min)
		}
	}
}

// waitHostRealized waits until host enforces revision rev and every host
// is in sync. The other hosts' spans may not change with rev (a policy
// applied to one host's workloads), so they may stay at an earlier
// revision.
func (e *e2e) waitHostRealized(t *testing.T, host string, rev int64) {
	t.Helper()
	start := time.Now()
	for {
		hosts, err := e.client.Hosts(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var behind []string
		for _, h := range hosts {
			if !h.InSync || h.LastError != "" || h.Name == host && h.RealizedRevision < rev {
				behind = append(behind, fmt.Sprintf("%s (realized %d, in sync %v, error %q)", h.Name, h.RealizedRevision, h.InSync, h.LastError))
			}
		}
		if len(behind) == 0 && len(hosts) == 3 {
			t.Logf("revision %d realized on %s in %s", rev, host, time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("revision %d not realized on %s after 30s: %s", rev, host, strings.Join(behind, "; "))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

var (
	snoopAnswersRE = regexp.MustCompile(`Snooper:\{Packets:\d+ Answers:(\d+)`)
	cacheAddedRE   = regexp.MustCompile(`Cache:\{.*?Added:(\d+)`)
)

// snooperStopped returns the counters of the last "DNS snooper stopped"
// line written to the log after its first offset bytes.
func snooperStopped(t *testing.T, log string, offset int64) string {
	t.Helper()
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) < offset {
		offset = 0
	}
	stats := ""
	for _, l := range strings.Split(string(b[offset:]), "\n") {
		if strings.Contains(l, `msg="DNS snooper stopped"`) {
			if _, s, ok := strings.Cut(l, "stats="); ok {
				stats = s
			}
		}
	}
	return stats
}

func fileSize(t *testing.T, name string) int64 {
	t.Helper()
	fi, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
