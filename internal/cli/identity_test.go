package cli

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/directory/slapdtest"
	"github.com/bulkhead/bulkhead/internal/flow"
)

const identityLDIF = `dn: ou=people,dc=lab,dc=test
objectClass: organizationalUnit
ou: people

dn: uid=alice,ou=people,dc=lab,dc=test
objectClass: inetOrgPerson
uid: alice
cn: Alice Archer
sn: Archer

dn: uid=bob,ou=people,dc=lab,dc=test
objectClass: inetOrgPerson
uid: bob
cn: Bob Baker
sn: Baker

dn: cn=hr,dc=lab,dc=test
objectClass: groupOfNames
cn: hr
member: uid=alice,ou=people,dc=lab,dc=test
member: cn=hr-managers,dc=lab,dc=test

dn: cn=hr-managers,dc=lab,dc=test
objectClass: groupOfNames
cn: hr-managers
member: cn=hr,dc=lab,dc=test
`

const identityPolicy = `apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: rdsh1}
spec: {ips: [10.77.5.10], tags: {app: vdi}}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: hr1}
spec: {ips: [10.77.4.10], tags: {app: hr}}
---
apiVersion: bulkhead.io/v1
kind: Group
metadata: {name: hr-users}
spec: {directoryGroups: [hr]}
---
apiVersion: bulkhead.io/v1
kind: Policy
metadata: {name: hr}
spec:
  category: Application
  rules:
  - {name: hr-web, sources: [hr-users], destinations: [10.77.4.10], services: [tcp/80], action: allow}
---
apiVersion: bulkhead.io/v1
kind: DefaultRule
metadata: {name: default}
spec: {action: drop}
`

// TestIdentityTour: an LDAP source, RDSH sessions, flows with users and
// rules on a directory group, as an operator drives them.
func TestIdentityTour(t *testing.T) {
	ldap := slapdtest.Start(t, identityLDIF, slapdtest.Options{})
	conn, srv := startManagerServer(t)
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	mustRun(t, "", append(conn, "apply", "-f", write("policy.yaml", identityPolicy))...)

	out := mustRun(t, "", append(conn, "source", "add", "ldap", "corp", "--url", ldap.URL, "--bind-dn", ldap.ReaderDN,
		"--password-file", write("pw", ldap.ReaderPassword+"\n"), "--base-dn", ldap.BaseDN, "--interval", "0")...)
	if !strings.Contains(out, "directory source corp added") {
		t.Errorf("source add ldap:\n%s", out)
	}
	if out := mustRun(t, "", append(conn, "source", "sync", "corp")...); !strings.Contains(out, "2 users, 2 groups; users added: alice,bob") {
		t.Errorf("source sync:\n%s", out)
	}
	if out := mustRun(t, "", append(conn, "source", "list")...); !strings.Contains(out, "corp") || !strings.Contains(out, "ldap") {
		t.Errorf("source list:\n%s", out)
	}
	out = mustRun(t, "", append(conn, "identity", "users", "--group", "hr-managers")...)
	if !strings.Contains(out, "alice") || strings.Contains(out, "bob") || !strings.Contains(out, "hr,hr-managers") {
		t.Errorf("users of hr-managers (a cycle with hr):\n%s", out)
	}
	if out := mustRun(t, "", append(conn, "identity", "groups")...); !strings.Contains(out, "hr-managers") {
		t.Errorf("groups:\n%s", out)
	}

	start := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	events := `{"user": "alice", "ip": "10.77.5.10", "ports": "20000-20999", "start": "` + start + `"}
{"user": "bob", "ip": "10.77.5.10", "ports": "21000-21999", "start": "` + start + `"}
{"user": "carol", "ip": "not-an-ip"}
`
	out = mustRun(t, events, append(conn, "identity", "events", "-")...)
	if !strings.Contains(out, "2 events accepted: 2 sessions started, 0 ended; 0 ignored, 1 bad") || !strings.Contains(out, `bad event #2: ip "not-an-ip"`) {
		t.Errorf("events:\n%s", out)
	}
	if out := mustRun(t, "", append(conn, "identity", "who", "10.77.5.10:21001")...); !strings.HasPrefix(out, "bob (session at 10.77.5.10 ports 21000-21999") {
		t.Errorf("who:\n%s", out)
	}
	if out := mustRun(t, "", append(conn, "identity", "sessions", "--open")...); strings.Count(out, "10.77.5.10") != 2 {
		t.Errorf("sessions:\n%s", out)
	}
	if _, err := run(t, "", append(conn, "identity", "who", "rdsh1")...); err == nil {
		t.Error("who rdsh1: no error")
	}

	rdsh, hr := netip.MustParseAddr("10.77.5.10"), netip.MustParseAddr("10.77.4.10")
	now := time.Now()
	var recs []flow.Record
	for i, port := range []uint16{20001, 21001} {
		recs = append(recs, flow.Record{ID: string(rune('a' + i)), Kind: flow.KindUpdate, Src: rdsh, Dst: hr, Proto: 6, SrcPort: port, DstPort: 80,
			Start: now.Add(-time.Minute), Seen: now, RuleID: 1, Verdict: flow.Drop})
	}
	if err := srv.IngestFlows(context.Background(), "hv3", recs); err != nil {
		t.Fatal(err)
	}
	out = mustRun(t, "", append(conn, "flows")...)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "USER") || !strings.Contains(out, "bob") || !strings.Contains(out, "alice") {
		t.Errorf("flows:\n%s", out)
	}
	var onlyAlice []api.Flow
	if err := json.Unmarshal([]byte(mustRun(t, "", append(conn, "flows", "--user", "alice", "-o", "json")...)), &onlyAlice); err != nil ||
		len(onlyAlice) != 1 || onlyAlice[0].SrcPort != 20001 {
		t.Errorf("flows --user alice: %+v, %v", onlyAlice, err)
	}
	// The map shows who is behind the edge.
	if out := mustRun(t, "", append(conn, "map", "--level", "workload")...); !strings.Contains(out, "USERS") ||
		!strings.Contains(out, "alice(1)") || !strings.Contains(out, "bob(1)") {
		t.Errorf("map with users:\n%s", out)
	}

	// Only the hr user on the RDSH host reaches the HR application.
	for user, verdict := range map[string]string{"alice": "allow", "bob": "drop"} {
		out := mustRun(t, "", append(conn, "eval", "--from", "10.77.5.10", "--to", "10.77.4.10", "--port", "80", "--user", user, "-o", "json")...)
		var r api.EvalResponse
		if err := json.Unmarshal([]byte(out), &r); err != nil || r.Verdict != verdict {
			t.Errorf("eval --user %s: %+v, %v; want %s", user, r, err, verdict)
		}
	}

	if out := mustRun(t, "", append(conn, "source", "delete", "corp")...); !strings.Contains(out, "deleted") {
		t.Errorf("source delete:\n%s", out)
	}
}
