package manager

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/apiclient"
	"github.com/bulkhead/bulkhead/internal/directory"
	"github.com/bulkhead/bulkhead/internal/directory/slapdtest"
	"github.com/bulkhead/bulkhead/internal/flow"
)

// identityLDIF: hr-managers is nested in hr, and a cycle between loop-a
// and loop-b holds bob.
const identityLDIF = `dn: ou=people,dc=lab,dc=test
objectClass: organizationalUnit
ou: people

dn: ou=groups,dc=lab,dc=test
objectClass: organizationalUnit
ou: groups

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

dn: uid=dave,ou=people,dc=lab,dc=test
objectClass: inetOrgPerson
uid: dave
cn: Dave Dyer
sn: Dyer

dn: cn=hr,ou=groups,dc=lab,dc=test
objectClass: groupOfNames
cn: hr
member: uid=alice,ou=people,dc=lab,dc=test
member: cn=hr-managers,ou=groups,dc=lab,dc=test

dn: cn=hr-managers,ou=groups,dc=lab,dc=test
objectClass: groupOfNames
cn: hr-managers
member: uid=dave,ou=people,dc=lab,dc=test

dn: cn=loop-a,ou=groups,dc=lab,dc=test
objectClass: groupOfNames
cn: loop-a
member: cn=loop-b,ou=groups,dc=lab,dc=test

dn: cn=loop-b,ou=groups,dc=lab,dc=test
objectClass: groupOfNames
cn: loop-b
member: cn=loop-a,ou=groups,dc=lab,dc=test
member: uid=bob,ou=people,dc=lab,dc=test
`

// identityPolicy: an RDSH host and the HR application; only the hr
// directory group reaches it.
const identityPolicy = `apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: rdsh1}
spec: {ips: [10.77.5.10], tags: {app: vdi, tier: desktop}}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: hr1}
spec: {ips: [10.77.4.10], tags: {app: hr, tier: web}}
---
apiVersion: bulkhead.io/v1
kind: Group
metadata: {name: hr-users}
spec: {directoryGroups: [HR]}
---
apiVersion: bulkhead.io/v1
kind: Group
metadata: {name: hr-app}
spec: {match: app == "hr"}
---
apiVersion: bulkhead.io/v1
kind: Policy
metadata: {name: hr}
spec:
  category: Application
  rules:
  - {name: hr-web, sources: [hr-users], destinations: [hr-app], services: [tcp/80], action: allow}
  - {name: hr-staged, sources: [hr-users], destinations: [hr-app], services: [tcp/8080], action: allow, mode: staged}
---
apiVersion: bulkhead.io/v1
kind: DefaultRule
metadata: {name: default}
spec: {action: drop}
`

func TestDirectorySourceAndRules(t *testing.T) {
	srv := slapdtest.Start(t, identityLDIF, slapdtest.Options{})
	tm := startManager(t)
	op, auditor := tm.client(t, api.RoleOperator), tm.client(t, api.RoleAuditor)
	ctx := context.Background()
	var ae *apiclient.Error
	applyText(t, op, identityPolicy)

	// Before any sync the directory group has no members: alice is dropped.
	eval := func(user string, port int) api.EvalResponse {
		t.Helper()
		res, err := auditor.Eval(ctx, api.EvalRequest{From: "10.77.5.10", To: "10.77.4.10", Proto: "tcp", Port: port, User: user})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if r := eval("alice", 80); r.Verdict != "drop" {
		t.Fatalf("alice before the sync: %s by %s, want drop", r.Verdict, r.Rule)
	}

	src, err := op.CreateDirectorySource(ctx, api.DirectorySourceRequest{Name: "corp", URL: srv.URL, BindDN: srv.ReaderDN, Password: srv.ReaderPassword,
		BaseDN: srv.BaseDN, Interval: "0"})
	if err != nil {
		t.Fatal(err)
	}
	if src.Interval != "0s" || src.UserFilter == "" || src.Users != 0 {
		t.Errorf("created source %+v", src)
	}
	if b, _ := json.Marshal(src); strings.Contains(string(b), srv.ReaderPassword) {
		t.Error("the password came back")
	}
	for _, req := range []api.DirectorySourceRequest{
		{Name: "corp", URL: srv.URL, BaseDN: srv.BaseDN},               // taken
		{Name: "Bad Name", URL: srv.URL, BaseDN: srv.BaseDN},           // name
		{Name: "x", URL: "http://x", BaseDN: srv.BaseDN},               // url
		{Name: "x", URL: srv.URL},                                      // base DN
		{Name: "x", URL: srv.URL, BaseDN: srv.BaseDN, Interval: "10s"}, // interval
	} {
		if _, err := op.CreateDirectorySource(ctx, req); !errors.As(err, &ae) || ae.Status/100 != 4 {
			t.Errorf("create %+v: %v, want a 4xx", req, err)
		}
	}
	if _, err := op.CreateSource(ctx, api.SourceRequest{Name: "y", Kind: "ldap", URL: srv.URL}); !errors.As(err, &ae) || !strings.Contains(ae.Error(), "/directory/sources") {
		t.Errorf("POST /sources with kind ldap: %v, want a pointer to /directory/sources", err)
	}

	res, err := op.SyncDirectorySource(ctx, "corp")
	if err != nil {
		t.Fatal(err)
	}
	if res.Users != 3 || res.Groups != 4 || !slices.Equal(res.AddedUsers, []string{"alice", "bob", "dave"}) {
		t.Errorf("sync: %+v", res)
	}
	if again, err := op.SyncDirectorySource(ctx, "corp"); err != nil || len(again.AddedUsers)+len(again.RemovedUsers) != 0 {
		t.Errorf("second sync: %+v, %v; want no change", again, err)
	}

	users, err := auditor.DirectoryUsers(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	groupsOf := map[string][]string{}
	for _, u := range users {
		groupsOf[u.Name] = u.Groups
	}
	want := map[string][]string{"alice": {"hr"}, "bob": {"loop-a", "loop-b"}, "dave": {"hr", "hr-managers"}}
	if !reflect.DeepEqual(groupsOf, want) {
		t.Errorf("users' groups = %v, want %v", groupsOf, want)
	}
	if hr, err := auditor.DirectoryUsers(ctx, "hr"); err != nil || len(hr) != 2 || hr[0].Name != "alice" || hr[1].Name != "dave" {
		t.Errorf("users of hr = %+v, %v", hr, err)
	}
	groups, err := auditor.DirectoryGroups(ctx)
	if err != nil || len(groups) != 4 || groups[0].Name != "hr" || !slices.Equal(groups[0].Members, []string{"alice", "dave"}) || !slices.Equal(groups[0].Groups, []string{"hr-managers"}) {
		t.Errorf("groups = %+v, %v", groups, err)
	}
	srcs, err := auditor.Sources(ctx)
	if err != nil || len(srcs) != 1 || srcs[0].Kind != "ldap" || srcs[0].Records != 3 || srcs[0].LastSync == nil || srcs[0].LastError != "" {
		t.Errorf("sources = %+v, %v", srcs, err)
	}
	if _, err := op.SyncSource(ctx, "corp"); !errors.As(err, &ae) || ae.Status != http.StatusConflict {
		t.Errorf("POST /sources/corp/sync: %v, want 409 pointing to the directory route", err)
	}

	// The directory now decides: alice (hr) and dave (hr-managers, nested
	// in hr) reach HR; bob does not.
	for user, verdict := range map[string]string{"alice": "allow", "dave": "allow", "bob": "drop", "": "drop", "ALICE": "allow"} {
		if r := eval(user, 80); r.Verdict != verdict {
			t.Errorf("user %q: %s by %s, want %s", user, r.Verdict, r.Rule, verdict)
		}
	}
	// The group's members list its directory users.
	if m, err := auditor.GroupMembers(ctx, "hr-users", 0); err != nil || !slices.Equal(m.Users, []string{"alice", "dave"}) {
		t.Errorf("members of hr-users: %+v, %v", m, err)
	}

	// A failed sync keeps the users and says why.
	if _, err := op.CreateDirectorySource(ctx, api.DirectorySourceRequest{Name: "broken", URL: srv.URL, BindDN: srv.ReaderDN, Password: "wrong", BaseDN: srv.BaseDN}); err != nil {
		t.Fatal(err)
	}
	if _, err := op.SyncDirectorySource(ctx, "broken"); !errors.As(err, &ae) || ae.Status != http.StatusBadGateway || !strings.Contains(ae.Error(), "bind as") {
		t.Errorf("sync with a wrong password: %v, want 502 naming the bind", err)
	}
	if ds, _ := auditor.DirectorySources(ctx); len(ds) != 2 || ds[0].Name != "broken" || !strings.Contains(ds[0].LastError, "bind as") || ds[1].Users != 3 {
		t.Errorf("directory sources after a failed sync: %+v", ds)
	}

	// Deleting the source removes its users: alice is dropped again.
	if err := op.DeleteDirectorySource(ctx, "corp"); err != nil {
		t.Fatal(err)
	}
	if r := eval("alice", 80); r.Verdict != "drop" {
		t.Errorf("alice after the source went: %s by %s, want drop", r.Verdict, r.Rule)
	}
	if err := op.DeleteDirectorySource(ctx, "corp"); !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
		t.Errorf("second delete: %v, want 404", err)
	}
}

func TestIdentityEventsAndFlowUsers(t *testing.T) {
	srv := slapdtest.Start(t, identityLDIF, slapdtest.Options{})
	tm := startManager(t)
	op, auditor := tm.client(t, api.RoleOperator), tm.client(t, api.RoleAuditor)
	ctx := context.Background()
	var ae *apiclient.Error
	applyText(t, op, identityPolicy)
	if _, err := op.CreateDirectorySource(ctx, api.DirectorySourceRequest{Name: "corp", URL: srv.URL, BaseDN: srv.BaseDN, Interval: "0"}); err != nil {
		t.Fatal(err)
	}
	if _, err := op.SyncDirectorySource(ctx, "corp"); err != nil { // anonymous bind
		t.Fatal(err)
	}

	now := time.Now().UTC().Truncate(time.Second)
	ts := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }
	events := []string{
		// 0, 1: two RDSH sessions on rdsh1
		`{"user": "alice", "ip": "10.77.5.10", "ports": "20000-20999", "start": "` + ts(-time.Hour) + `"}`,
		`{"user": "bob", "ip": "10.77.5.10", "ports": "21000-21999", "start": "` + ts(-time.Hour) + `"}`,
		// 2: a VDI desktop logon from a domain controller's log
		`{"EventID": 4624, "TargetUserName": "DAVE", "TargetDomainName": "LAB", "IpAddress": "::ffff:10.77.6.10", "IpPort": "50123",
		  "TimeCreated": "` + ts(-2*time.Hour) + `", "TargetLogonId": "0x3E7A1", "LogonType": 10}`,
		// 3: its logoff, sent before a later logon in the same batch
		`{"EventID": 4634, "EventData": {"TargetUserName": "dave", "TargetLogonId": "0x3e7a1"}, "TimeCreated": "` + ts(-90*time.Minute) + `"}`,
		// 4: bad: no such field
		`{"user": "carol", "ip": "10.77.6.11", "port": 5}`,
		// 5: ignored: a computer account
		`{"EventID": 4624, "TargetUserName": "WS01$", "IpAddress": "10.77.6.12", "TimeCreated": "` + ts(0) + `"}`,
		// 6: bad: a logoff of nothing
		`{"user": "carol", "ip": "10.77.6.11", "end": "` + ts(0) + `"}`,
		// 7: bad: not an object
		`"alice"`,
	}
	req := api.IdentityEventsRequest{}
	for _, e := range events {
		req.Events = append(req.Events, json.RawMessage(e))
	}
	res, err := op.IdentityEvents(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 4 || res.Started != 3 || res.Ended != 1 || len(res.Ignored) != 1 || res.Ignored[0].Index != 5 {
		t.Errorf("events result %+v", res)
	}
	var bad []int
	for _, b := range res.Bad {
		bad = append(bad, b.Index)
		if b.Reason == "" {
			t.Errorf("bad event #%d without a reason", b.Index)
		}
	}
	if !slices.Equal(bad, []int{4, 6, 7}) {
		t.Errorf("bad events %v (%+v), want 4, 6, 7", bad, res.Bad)
	}
	if !strings.Contains(res.Bad[0].Reason, `unknown field "port"`) || !strings.Contains(res.Bad[1].Reason, "no open session of carol at 10.77.6.11") {
		t.Errorf("reasons: %+v", res.Bad)
	}
	if _, err := auditor.IdentityEvents(ctx, req); !errors.As(err, &ae) || ae.Status != http.StatusForbidden {
		t.Errorf("events as an auditor: %v, want 403", err)
	}

	sessions, err := auditor.IdentitySessions(ctx, apiclient.SessionQuery{})
	if err != nil || len(sessions) != 3 {
		t.Fatalf("sessions = %+v, %v", sessions, err)
	}
	if open, _ := auditor.IdentitySessions(ctx, apiclient.SessionQuery{Open: true, IP: "10.77.5.10"}); len(open) != 2 {
		t.Errorf("open sessions on rdsh1 = %+v, want alice's and bob's", open)
	}
	if d, _ := auditor.IdentitySessions(ctx, apiclient.SessionQuery{User: "dave"}); len(d) != 1 || d[0].End == nil || d[0].Domain != "lab" || d[0].IP != "10.77.6.10" ||
		!slices.Equal(d[0].Groups, []string{"hr", "hr-managers"}) {
		t.Errorf("dave's session = %+v", d)
	}
	for _, tc := range []struct {
		ip   string
		port uint16
		at   string
		want string
	}{
		{"10.77.5.10", 20001, "", "alice"},
		{"10.77.5.10", 21999, "", "bob"},
		{"10.77.5.10", 22000, "", ""},
		{"10.77.6.10", 0, "", ""},                         // dave logged off
		{"10.77.6.10", 0, ts(-100 * time.Minute), "dave"}, // but was there
		{"10.77.5.10", 20001, ts(-2 * time.Hour), ""},     // before alice's logon
	} {
		who, err := auditor.IdentityWho(ctx, tc.ip, tc.port, tc.at)
		if err != nil || who.User != tc.want {
			t.Errorf("who %s:%d at %q = %+v, %v; want %q", tc.ip, tc.port, tc.at, who, err, tc.want)
		}
	}
	if _, err := auditor.IdentityWho(ctx, "rdsh1", 0, ""); !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
		t.Errorf("who rdsh1: %v, want 400", err)
	}

	// Flows from the RDSH host: the source port names the user, and the
	// staged rule is decided with it.
	rdsh, hr := netip.MustParseAddr("10.77.5.10"), netip.MustParseAddr("10.77.4.10")
	rec := func(id string, sport, dport uint16) flow.Record {
		return flow.Record{ID: id, Kind: flow.KindUpdate, Src: rdsh, Dst: hr, Proto: 6, SrcPort: sport, DstPort: dport,
			Start: now.Add(-time.Minute), Seen: now, RuleID: 1, Verdict: flow.Drop, SrcPackets: 1}
	}
	if err := tm.srv.IngestFlows(ctx, "hv3", []flow.Record{rec("a", 20001, 80), rec("b", 21001, 80), rec("c", 20002, 8080), rec("d", 40000, 80)}); err != nil {
		t.Fatal(err)
	}
	flows, err := auditor.Flows(ctx, apiclient.FlowQuery{})
	if err != nil {
		t.Fatal(err)
	}
	userOf := map[string]string{}
	for _, f := range flows {
		userOf[strings.TrimPrefix(f.ID, "hv3/")] = f.User
		if f.ID == "hv3/c" && f.StagedRuleID == 0 {
			t.Errorf("alice's flow to 8080: no staged rule; the staged hr rule should decide it by her directory group")
		}
	}
	if want := map[string]string{"a": "alice", "b": "bob", "c": "alice", "d": ""}; !reflect.DeepEqual(userOf, want) {
		t.Errorf("flow users = %v, want %v", userOf, want)
	}
	if alice, err := auditor.Flows(ctx, apiclient.FlowQuery{User: "Alice"}); err != nil || len(alice) != 2 {
		t.Errorf("flows of alice = %d, %v; want 2", len(alice), err)
	}
	// The lead's scenario: both users on the RDSH host, only alice (hr)
	// reaches the HR application.
	for user, verdict := range map[string]string{"alice": "allow", "bob": "drop"} {
		r, err := auditor.Eval(ctx, api.EvalRequest{From: "10.77.5.10", To: "10.77.4.10", Proto: "tcp", Port: 80, User: user})
		if err != nil || r.Verdict != verdict {
			t.Errorf("eval %s: %+v, %v; want %s", user, r, err, verdict)
		}
	}

	// A restarted manager reads the sessions from the store.
	id := tm.srv.identity()
	id.mu.Lock()
	id.loaded, id.sessions = false, directory.NewTable(nil)
	id.mu.Unlock()
	if who, err := auditor.IdentityWho(ctx, "10.77.5.10", 21500, ""); err != nil || who.User != "bob" {
		t.Errorf("after reloading from the store: who = %+v, %v", who, err)
	}
}
