package lab_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/console"
)

// testConsole is the map user story on the running lab, in a browser:
// the admin logs in, the map shows the lab's traffic unprotected (amber;
// the previous subtest rolled its policy back), the Recommendations page
// drafts a policy for the whole data center over the last hour with the
// attacker left out as a scanner, one click enforces it, and once every
// host realized it the map has no amber edge left and red edges only
// where the attacker is an end. Then the policy is rolled back through the
// API so that the next subtest starts from none.
//
// It needs node, Debian's chromium and the console built into the binary
// (make console before the test builds it): without them it is skipped,
// unless CI is set.
func (e *e2e) testConsole(t *testing.T) {
	need := t.Skipf
	if os.Getenv("CI") != "" {
		need = t.Fatalf
	}
	if !console.Built() {
		need("the console's browser test needs the built console: run make console")
	}
	chromium := os.Getenv("BULKHEAD_CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		need("the console's browser test needs chromium at %s (apt-get install chromium): %v", chromium, err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		need("the console's browser test needs node in PATH")
	}
	web := filepath.Join(e.root, "web")
	if _, err := os.Stat(filepath.Join(web, "node_modules", "playwright-core")); err != nil {
		need("the console's browser test needs web/node_modules: run make console")
	}

	ctx := context.Background()
	revs, err := e.client.Revisions(ctx, 1)
	if err != nil || len(revs) == 0 {
		t.Fatalf("revisions: %v %v", revs, err)
	}
	before := revs[0].Number
	token, err := os.ReadFile(e.st.Manager.TokenFile)
	if err != nil {
		t.Fatal(err)
	}
	shots := os.Getenv("BULKHEAD_SCREENSHOTS")
	if shots != "" && !filepath.IsAbs(shots) {
		shots = filepath.Join(e.root, shots)
	}

	sctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	script := exec.CommandContext(sctx, node, filepath.Join("e2e", "lab.mjs"))
	script.Dir = web
	script.Env = append(os.Environ(),
		"BULKHEAD_URL="+e.st.Manager.URL,
		"BULKHEAD_ADMIN_TOKEN="+strings.TrimSpace(string(token)),
		"BULKHEAD_REVISION="+strconv.FormatInt(before, 10),
		"BULKHEAD_CHROMIUM="+chromium,
		"BULKHEAD_SCREENSHOTS="+shots,
	)
	var out bytes.Buffer
	script.Stdout, script.Stderr = &out, &out
	start := time.Now()
	err = script.Run()
	t.Logf("web/e2e/lab.mjs (%s):\n%s", time.Since(start).Round(time.Millisecond), out.String())
	if err != nil {
		t.Errorf("browser test failed: %v", err)
	}

	// Whatever the browser got to, the next subtest starts from no policy:
	// back to the revision before, as an operator would through the API.
	revs, err = e.client.Revisions(ctx, 1)
	if err != nil || len(revs) == 0 {
		t.Fatalf("revisions: %v %v", revs, err)
	}
	if revs[0].Number == before {
		return
	}
	if !t.Failed() && (revs[0].Number != before+1 || revs[0].Author != "admin" || !strings.HasPrefix(revs[0].Summary, "recommend all()")) {
		t.Errorf("the revision the browser published: %+v; want revision %d, the admin's recommendation for all()", revs[0], before+1)
	}
	r, err := e.client.Rollback(ctx, before)
	if err != nil {
		t.Fatalf("rollback to revision %d: %v", before, err)
	}
	e.waitRealized(t, r.Revision)
}
