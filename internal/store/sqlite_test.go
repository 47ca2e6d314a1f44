package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/policy"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func dbPath(t testing.TB) string { return filepath.Join(t.TempDir(), "bulkhead.db") }

func openAt(t testing.TB, path string, opts ...Option) *SQLite {
	t.Helper()
	s, err := OpenSQLite(path, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openTest(t testing.TB, opts ...Option) *SQLite { return openAt(t, dbPath(t), opts...) }

// testSet builds a set of nPolicies sections of rulesPer rules each, with
// groups, services and rule ids, shaped like a real data center's policy.
func testSet(nPolicies, rulesPer int) *policy.Set {
	s := policy.NewSet()
	hdr := func(k policy.Kind, name string) policy.Header {
		return policy.Header{APIVersion: policy.APIVersion, Kind: k, Metadata: policy.Metadata{Name: name}}
	}
	nGroups := max(1, nPolicies)
	for g := range nGroups {
		name := fmt.Sprintf("app-%04d", g)
		s.Groups[name] = &policy.Group{Header: hdr(policy.KindGroup, name), Spec: policy.GroupSpec{
			Match: fmt.Sprintf(`app == "a%04d" && tier in ("web","api")`, g),
			IPs:   []string{fmt.Sprintf("10.%d.%d.0/24", g/256, g%256)},
		}}
	}
	s.Services["https"] = &policy.Service{Header: hdr(policy.KindService, "https"), Spec: policy.ServiceSpec{Ports: []string{"tcp/443"}}}
	id := FirstRuleID
	for p := range nPolicies {
		name := fmt.Sprintf("sec-%04d", p)
		pol := &policy.Policy{Header: hdr(policy.KindPolicy, name), Spec: policy.PolicySpec{
			Category:  policy.CategoryApplication,
			Priority:  p,
			AppliedTo: []string{fmt.Sprintf("app-%04d", p%nGroups)},
		}}
		for r := range rulesPer {
			rule := policy.Rule{
				Name:         fmt.Sprintf("r%03d", r),
				Sources:      []string{fmt.Sprintf("app-%04d", (p+r)%nGroups)},
				Destinations: []string{fmt.Sprintf("app-%04d", p%nGroups)},
				Services:     []string{"https", fmt.Sprintf("tcp/%d", 8000+r)},
				Action:       policy.ActionAllow,
				Direction:    policy.DirectionIn,
			}
			pol.Spec.Rules = append(pol.Spec.Rules, rule)
			s.RuleIDs[policy.RuleKey(name, rule.Name)] = id
			id++
		}
		s.Policies[name] = pol
	}
	return s
}

func workload(name, ip string) *policy.Workload {
	return &policy.Workload{
		Header: policy.Header{APIVersion: policy.APIVersion, Kind: policy.KindWorkload, Metadata: policy.Metadata{Name: name}},
		Spec:   policy.WorkloadSpec{IPs: []string{ip}, Tags: map[string]string{"app": "shop"}},
	}
}

// policyOnly is what a revision keeps of a set.
func policyOnly(s *policy.Set) *policy.Set {
	c := *s
	c.Workloads = map[string]*policy.Workload{}
	return &c
}

func TestLatestEmpty(t *testing.T) {
	s := openTest(t)
	rev, err := s.Latest(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rev.Number != 0 || !reflect.DeepEqual(rev.Set, policy.NewSet()) {
		t.Fatalf("empty store: got revision %d %+v, want 0 with NewSet()", rev.Number, rev.Set)
	}
	if got, err := s.Revisions(context.Background(), 0); err != nil || len(got) != 0 {
		t.Fatalf("Revisions on empty store = %v, %v", got, err)
	}
}

func TestCommitRoundTrip(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	s := openTest(t, WithClock(clock.Now))

	set1 := testSet(3, 4)
	set1.Workloads["stray"] = workload("stray", "10.0.0.9") // must not be revisioned
	n, err := s.Commit(ctx, Commit{Base: 0, Author: "alice", Summary: "first", Set: set1,
		Audit: []AuditEntry{{Actor: "alice", Action: "apply", Object: "Policy/sec-0000", Diff: "+ sec-0000"}}})
	if err != nil || n != 1 {
		t.Fatalf("first commit = %d, %v; want 1", n, err)
	}
	clock.Advance(time.Minute)
	set2 := testSet(5, 2)
	set2.Default.Spec.Action = policy.ActionDrop
	if n, err := s.Commit(ctx, Commit{Base: 1, Author: "bob", Summary: "second", Set: set2}); err != nil || n != 2 {
		t.Fatalf("second commit = %d, %v; want 2", n, err)
	}
	clock.Advance(time.Minute)
	if n, err := s.Commit(ctx, Commit{Base: 2, Author: "carol", Summary: "roll back to 1", Set: set1, Rollback: 1}); err != nil || n != 3 {
		t.Fatalf("rollback commit = %d, %v; want 3", n, err)
	}

	latest, err := s.Latest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if latest.Number != 3 || latest.Author != "carol" || latest.Rollback != 1 || !latest.Time.Equal(clock.Now()) {
		t.Errorf("latest = %d by %q rollback %d at %s", latest.Number, latest.Author, latest.Rollback, latest.Time)
	}
	if !reflect.DeepEqual(latest.Set, policyOnly(set1)) {
		t.Errorf("latest set differs from the committed one")
	}
	rev2, err := s.Revision(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rev2.Set, policyOnly(set2)) || rev2.Set.Default.Spec.Action != policy.ActionDrop {
		t.Errorf("revision 2 set differs from the committed one")
	}
	if rev0, err := s.Revision(ctx, 0); err != nil || !reflect.DeepEqual(rev0.Set, policy.NewSet()) {
		t.Errorf("revision 0 = %v, %v; want the empty set", rev0, err)
	}
	for _, n := range []int64{4, -1} {
		if _, err := s.Revision(ctx, n); !errors.Is(err, ErrNotFound) {
			t.Errorf("Revision(%d) error = %v, want ErrNotFound", n, err)
		}
	}

	infos, err := s.Revisions(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	want := []RevisionInfo{
		{Number: 3, Author: "carol", Time: clock.Now(), Summary: "roll back to 1", Rollback: 1},
		{Number: 2, Author: "bob", Time: clock.Now().Add(-time.Minute), Summary: "second"},
	}
	if !reflect.DeepEqual(infos, want) {
		t.Errorf("Revisions(2) = %+v\nwant %+v", infos, want)
	}
	if all, _ := s.Revisions(ctx, 0); len(all) != 3 {
		t.Errorf("Revisions(0) returned %d, want 3", len(all))
	}

	log, err := s.AuditLog(ctx, AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != 1 || log[0].Revision != 1 || log[0].Diff != "+ sec-0000" || log[0].ID == 0 {
		t.Errorf("audit log = %+v; want one apply entry for revision 1", log)
	}
}

func TestCommitInvalid(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	tests := []struct {
		name string
		c    Commit
		want error
	}{
		{"negative base", Commit{Base: -1, Set: policy.NewSet()}, ErrInvalid},
		{"rollback without set", Commit{Rollback: 1}, ErrInvalid},
		{"rollback to the future", Commit{Set: policy.NewSet(), Rollback: 5}, ErrNotFound},
		{"nil workload", Commit{UpsertWorkloads: []*policy.Workload{nil}}, ErrInvalid},
		{"unnamed workload", Commit{UpsertWorkloads: []*policy.Workload{workload("", "10.0.0.1")}}, ErrInvalid},
		{"audit without action", Commit{Audit: []AuditEntry{{Actor: "x"}}}, ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.Commit(ctx, tt.c); !errors.Is(err, tt.want) {
				t.Errorf("error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCommitConflict(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	for base := int64(0); base < 2; base++ {
		if _, err := s.Commit(ctx, Commit{Base: base, Set: testSet(1, 1)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, base := range []int64{0, 1, 3} {
		_, err := s.Commit(ctx, Commit{Base: base, Set: testSet(1, 1)})
		if !errors.Is(err, ErrConflict) {
			t.Errorf("commit on base %d with latest 2: error = %v, want ErrConflict", base, err)
		}
	}
	// Inventory does not conflict with policy.
	n, err := s.Commit(ctx, Commit{Base: 0, UpsertWorkloads: []*policy.Workload{workload("web-1", "10.0.0.1")}})
	if err != nil || n != 2 {
		t.Errorf("inventory-only commit on a stale base = %d, %v; want 2, nil", n, err)
	}
}

// snapshot is everything a commit can change.
type snapshot struct {
	latest    int64
	workloads []*policy.Workload
	audit     []AuditEntry
}

func takeSnapshot(t *testing.T, s *SQLite) snapshot {
	t.Helper()
	ctx := context.Background()
	rev, err := s.Latest(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := s.Workloads(ctx)
	if err != nil {
		t.Fatal(err)
	}
	log, err := s.AuditLog(ctx, AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	return snapshot{rev.Number, ws, log}
}

func TestCommitAtomic(t *testing.T) {
	ctx := context.Background()
	forced := errors.New("forced failure")
	full := func() Commit {
		return Commit{
			Base: 1, Author: "alice", Summary: "change", Set: testSet(2, 2),
			UpsertWorkloads: []*policy.Workload{workload("web-2", "10.0.0.2"), workload("web-3", "10.0.0.3")},
			DeleteWorkloads: []string{"web-1"},
			Audit: []AuditEntry{
				{Actor: "alice", Action: "apply", Object: "Policy/sec-0000"},
				{Actor: "alice", Action: "apply", Object: "Workload/web-2"},
			},
		}
	}
	tests := []struct {
		name   string
		failAt string // hook step that fails
		edit   func(*Commit)
		want   error
	}{
		{name: "hook at revision", failAt: "revision", want: forced},
		{name: "hook at workload", failAt: "workload", want: forced},
		{name: "hook at audit", failAt: "audit", want: forced},
		{name: "hook before commit", failAt: "commit", want: forced},
		{name: "delete unknown workload", edit: func(c *Commit) { c.DeleteWorkloads = append(c.DeleteWorkloads, "nope") }, want: ErrNotFound},
		{name: "audit of unknown revision", edit: func(c *Commit) { c.Audit[1].Revision = 77 }},
		{name: "stale base", edit: func(c *Commit) { c.Base = 0 }, want: ErrConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTest(t)
			if _, err := s.Commit(ctx, Commit{Base: 0, Set: testSet(1, 1),
				UpsertWorkloads: []*policy.Workload{workload("web-1", "10.0.0.1")},
				Audit:           []AuditEntry{{Actor: "setup", Action: "apply"}}}); err != nil {
				t.Fatal(err)
			}
			before := takeSnapshot(t, s)
			c := full()
			if tt.edit != nil {
				tt.edit(&c)
			}
			if tt.failAt != "" {
				s.hook = func(step string) error {
					if step == tt.failAt {
						return forced
					}
					return nil
				}
			}
			_, err := s.Commit(ctx, c)
			s.hook = nil
			if err == nil {
				t.Fatal("commit succeeded, want an error")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("error = %v, want %v", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "store: commit") {
				t.Errorf("error %q does not name the operation", err)
			}
			if after := takeSnapshot(t, s); !reflect.DeepEqual(before, after) {
				t.Errorf("failed commit changed the store:\nbefore %+v\nafter  %+v", before, after)
			}
			// The store is still usable after the failure.
			if _, err := s.Commit(ctx, Commit{Base: before.latest, Set: testSet(1, 1)}); err != nil {
				t.Errorf("commit after a failed one: %v", err)
			}
		})
	}
}

func TestCommitErrorNamesObject(t *testing.T) {
	s := openTest(t)
	s.hook = func(step string) error {
		if step == "workload" {
			return errors.New("disk on fire")
		}
		return nil
	}
	_, err := s.Commit(context.Background(), Commit{Base: 0, Set: policy.NewSet(),
		UpsertWorkloads: []*policy.Workload{workload("web-1", "10.0.0.1")}})
	const want = `store: commit revision 1: upsert workload "web-1": disk on fire`
	if err == nil || err.Error() != want {
		t.Errorf("error = %v, want %q", err, want)
	}
}

func TestWorkloads(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	commit := func(c Commit) {
		t.Helper()
		if _, err := s.Commit(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	commit(Commit{UpsertWorkloads: []*policy.Workload{workload("web-2", "10.0.0.2"), workload("web-1", "10.0.0.1")}})
	commit(Commit{UpsertWorkloads: []*policy.Workload{workload("web-1", "10.0.0.11")}, DeleteWorkloads: []string{"web-2"}})
	commit(Commit{UpsertWorkloads: []*policy.Workload{workload("db-1", "10.0.1.1")}})

	ws, err := s.Workloads(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, w := range ws {
		names = append(names, w.Metadata.Name)
	}
	if !reflect.DeepEqual(names, []string{"db-1", "web-1"}) {
		t.Errorf("workloads = %v, want [db-1 web-1]", names)
	}
	w, err := s.Workload(ctx, "web-1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(w, workload("web-1", "10.0.0.11")) {
		t.Errorf("web-1 = %+v, want the upserted one", w)
	}
	if _, err := s.Workload(ctx, "web-2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted workload: error = %v, want ErrNotFound", err)
	}
	if rev, _ := s.Latest(ctx); rev.Number != 0 {
		t.Errorf("inventory commits made revision %d", rev.Number)
	}
}

func TestNextRuleIDs(t *testing.T) {
	ctx := context.Background()
	path := dbPath(t)
	s, err := OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	first, err := s.NextRuleIDs(ctx, 3)
	if err != nil || first != FirstRuleID {
		t.Fatalf("first reservation = %d, %v; want %d", first, err, FirstRuleID)
	}
	second, err := s.NextRuleIDs(ctx, 1)
	if err != nil || second != first+3 {
		t.Fatalf("second reservation = %d, %v; want %d", second, err, first+3)
	}
	if _, err := s.NextRuleIDs(ctx, 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("NextRuleIDs(0) error = %v, want ErrInvalid", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openAt(t, path)
	third, err := s.NextRuleIDs(ctx, 10)
	if err != nil || third != second+1 {
		t.Fatalf("after reopen = %d, %v; want %d", third, err, second+1)
	}

	// Concurrent reservations never overlap.
	var (
		mu   sync.Mutex
		seen = map[uint32]bool{}
		wg   sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			for range 20 {
				id, err := s.NextRuleIDs(ctx, 5)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				for i := range uint32(5) {
					if seen[id+i] {
						t.Errorf("rule id %d handed out twice", id+i)
					}
					seen[id+i] = true
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()

	// The end of the id space is reported, not wrapped.
	if _, err := s.w.Exec("UPDATE sequences SET next = 4294967290 WHERE name = 'rule_id'"); err != nil {
		t.Fatal(err)
	}
	if id, err := s.NextRuleIDs(ctx, 6); err != nil || id != 4294967290 {
		t.Errorf("last 6 ids = %d, %v", id, err)
	}
	if _, err := s.NextRuleIDs(ctx, 1); !errors.Is(err, ErrExhausted) {
		t.Errorf("past the last id: error = %v, want ErrExhausted", err)
	}
}

func TestAuditFilters(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	t0 := clock.Now()
	s := openTest(t, WithClock(clock.Now))
	entries := []AuditEntry{
		{Actor: "alice", Action: "apply", Object: "Policy/shop"},
		{Actor: "bob", Action: "apply", Object: "Group/web"},
		{Actor: "alice", Action: "delete", Object: "Policy/shop"},
		{Actor: "admin", Action: "token.create", Object: ""},
		{Actor: "bob", Action: "rollback", Object: ""},
	}
	for _, e := range entries {
		if _, err := s.Commit(ctx, Commit{Audit: []AuditEntry{e}}); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Hour)
	}
	// Entry i was written at t0 + i hours.
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Hour) }

	tests := []struct {
		name string
		f    AuditFilter
		want []int // indexes into entries, newest first
	}{
		{"all", AuditFilter{}, []int{4, 3, 2, 1, 0}},
		{"limit", AuditFilter{Limit: 2}, []int{4, 3}},
		{"actor", AuditFilter{Actor: "alice"}, []int{2, 0}},
		{"object", AuditFilter{Object: "Policy/shop"}, []int{2, 0}},
		{"action", AuditFilter{Action: "apply"}, []int{1, 0}},
		{"since inclusive", AuditFilter{Since: at(3)}, []int{4, 3}},
		{"until exclusive", AuditFilter{Until: at(2)}, []int{1, 0}},
		{"window", AuditFilter{Since: at(1), Until: at(4)}, []int{3, 2, 1}},
		{"actor and window", AuditFilter{Actor: "bob", Since: at(1)}, []int{4, 1}},
		{"nothing", AuditFilter{Actor: "mallory"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.AuditLog(ctx, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			var want []AuditEntry
			for _, i := range tt.want {
				e := entries[i]
				e.Time = at(i)
				want = append(want, e)
			}
			for i := range got {
				if got[i].ID == 0 {
					t.Errorf("entry %d has no ID", i)
				}
				got[i].ID = 0
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestTokenLifecycle(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	s := openTest(t, WithClock(clock.Now))

	secret, tok, err := s.CreateToken(ctx, "ci", RoleOperator, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !wellFormedSecret(secret) || len(secret) != len("bh_")+43 {
		t.Errorf("secret %q is not bh_ + 32 bytes base64url", secret)
	}
	if tok.ID == "" || tok.Name != "ci" || tok.Role != RoleOperator || !tok.Created.Equal(clock.Now()) || !tok.Expires.Equal(clock.Now().Add(time.Hour)) {
		t.Errorf("token = %+v", tok)
	}
	clock.Advance(time.Second) // Tokens lists by creation time
	forever, admin, err := s.CreateToken(ctx, "root", RoleAdmin, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !admin.Expires.IsZero() {
		t.Errorf("ttl 0 token expires at %s", admin.Expires)
	}

	// Only the hash is stored.
	var n int
	if err := s.r.QueryRow("SELECT count(*) FROM tokens WHERE hash = ? OR hash = ? OR id = ?", secret, []byte(secret), secret).Scan(&n); err != nil || n != 0 {
		t.Errorf("secret found in the database (%d rows, %v)", n, err)
	}

	got, err := s.LookupToken(ctx, secret)
	if err != nil || !reflect.DeepEqual(got, tok) {
		t.Errorf("LookupToken = %+v, %v; want %+v", got, err, tok)
	}
	for _, bad := range []string{"", "bh_", secret[:len(secret)-1], secret + "A", "xx" + secret[2:], secret[:len(secret)-2] + "AA"} {
		if _, err := s.LookupToken(ctx, bad); !errors.Is(err, ErrNotFound) {
			t.Errorf("LookupToken(%q) error = %v, want ErrNotFound", bad, err)
		}
	}

	list, err := s.Tokens(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("Tokens = %v, %v", list, err)
	}

	clock.Advance(time.Hour)
	if _, err := s.LookupToken(ctx, secret); !errors.Is(err, ErrNotFound) {
		t.Errorf("expired token: error = %v, want ErrNotFound", err)
	}
	if _, err := s.LookupToken(ctx, forever); err != nil {
		t.Errorf("non-expiring token after an hour: %v", err)
	}
	if list, _ := s.Tokens(ctx); len(list) != 2 || !list[0].Expired(clock.Now()) || list[1].Expired(clock.Now()) {
		t.Errorf("Tokens after expiry = %+v; want both, the first expired", list)
	}

	if err := s.DeleteToken(ctx, admin.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LookupToken(ctx, forever); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted token: error = %v, want ErrNotFound", err)
	}
	if err := s.DeleteToken(ctx, admin.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete twice: error = %v, want ErrNotFound", err)
	}
}

func TestCreateTokenInvalid(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	tests := []struct {
		name, tokName, role string
		ttl                 time.Duration
	}{
		{"unknown role", "x", "root", 0},
		{"empty role", "x", "", 0},
		{"role case", "x", "Admin", 0},
		{"no name", "", RoleAdmin, 0},
		{"negative ttl", "x", RoleAdmin, -time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := s.CreateToken(ctx, tt.tokName, tt.role, tt.ttl); !errors.Is(err, ErrInvalid) {
				t.Errorf("error = %v, want ErrInvalid", err)
			}
		})
	}
	if list, err := s.Tokens(ctx); err != nil || len(list) != 0 {
		t.Errorf("refused tokens were stored: %v, %v", list, err)
	}
	// The schema refuses a bad role too, whatever writes it.
	if _, err := s.w.Exec("INSERT INTO tokens (id, name, role, hash, created_ns) VALUES ('i', 'n', 'root', x'00', 0)"); err == nil {
		t.Error("schema accepted role root")
	}
}

func TestConcurrentCommits(t *testing.T) {
	// "two handles" opens the file twice, as two manager processes would:
	// then it is BEGIN IMMEDIATE and the busy timeout that serialise them.
	for _, handles := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d handles", handles), func(t *testing.T) {
			ctx := context.Background()
			path := dbPath(t)
			stores := []*SQLite{openAt(t, path)}
			if handles == 2 {
				stores = append(stores, openAt(t, path))
			}
			set := testSet(2, 2)
			for round := int64(0); round < 20; round++ {
				var (
					wg   sync.WaitGroup
					errs [2]error
				)
				for i := range errs {
					s := stores[i%len(stores)]
					wg.Go(func() {
						_, errs[i] = s.Commit(ctx, Commit{Base: round, Author: fmt.Sprint(i), Set: set,
							Audit: []AuditEntry{{Actor: fmt.Sprint(i), Action: "apply"}}})
					})
				}
				wg.Wait()
				won := 0
				for _, err := range errs {
					switch {
					case err == nil:
						won++
					case !errors.Is(err, ErrConflict):
						t.Fatalf("round %d: unexpected error %v", round, err)
					}
				}
				if won != 1 {
					t.Fatalf("round %d: %d commits on the same base won, want exactly 1 (%v)", round, won, errs)
				}
			}
			if log, _ := stores[0].AuditLog(ctx, AuditFilter{}); len(log) != 20 {
				t.Errorf("audit has %d entries, want one per winning commit (20)", len(log))
			}
		})
	}
}

// TestConcurrentProcesses opens the same file twice, as two managers would,
// and checks that BEGIN IMMEDIATE plus the busy timeout serialise them.
func TestConcurrentProcesses(t *testing.T) {
	ctx := context.Background()
	path := dbPath(t)
	a, b := openAt(t, path), openAt(t, path)
	var wg sync.WaitGroup
	var mu sync.Mutex
	seen := map[uint32]bool{}
	for _, s := range []*SQLite{a, b, a, b} {
		wg.Go(func() {
			for range 25 {
				id, err := s.NextRuleIDs(ctx, 1)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if seen[id] {
					t.Errorf("id %d reserved twice", id)
				}
				seen[id] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != 100 {
		t.Errorf("reserved %d ids, want 100", len(seen))
	}
}

func TestReopenKeepsEverything(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	path := dbPath(t)
	s, err := OpenSQLite(path, WithClock(clock.Now))
	if err != nil {
		t.Fatal(err)
	}
	set := testSet(4, 3)
	if _, err := s.Commit(ctx, Commit{Base: 0, Author: "alice", Summary: "s", Set: set,
		UpsertWorkloads: []*policy.Workload{workload("web-1", "10.0.0.1")},
		Audit:           []AuditEntry{{Actor: "alice", Action: "apply", Object: "Policy/x", Diff: "d"}}}); err != nil {
		t.Fatal(err)
	}
	secret, tok, err := s.CreateToken(ctx, "ci", RoleAuditor, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetMeta(ctx, "ca.fingerprint", "ab:cd"); err != nil {
		t.Fatal(err)
	}
	before := takeSnapshot(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + "-wal"); err == nil {
		if fi, _ := os.Stat(path + "-wal"); fi.Size() != 0 {
			t.Errorf("WAL not checkpointed on close: %d bytes", fi.Size())
		}
	}

	s = openAt(t, path, WithClock(clock.Now))
	if after := takeSnapshot(t, s); !reflect.DeepEqual(before, after) {
		t.Errorf("reopen changed the store:\nbefore %+v\nafter  %+v", before, after)
	}
	rev, err := s.Latest(ctx)
	if err != nil || rev.Number != 1 || !reflect.DeepEqual(rev.Set, policyOnly(set)) {
		t.Errorf("latest after reopen = %v, %v", rev, err)
	}
	if got, err := s.LookupToken(ctx, secret); err != nil || !reflect.DeepEqual(got, tok) {
		t.Errorf("token after reopen = %+v, %v", got, err)
	}
	if v, err := s.Meta(ctx, "ca.fingerprint"); err != nil || v != "ab:cd" {
		t.Errorf("meta after reopen = %q, %v", v, err)
	}
}

func TestMeta(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	if _, err := s.Meta(ctx, "k"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unset key: error = %v, want ErrNotFound", err)
	}
	for _, v := range []string{"one", "two"} {
		if err := s.SetMeta(ctx, "k", v); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Meta(ctx, "k"); err != nil || got != v {
			t.Errorf("Meta = %q, %v; want %q", got, err, v)
		}
	}
	if err := s.SetMeta(ctx, "", "x"); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty key: error = %v, want ErrInvalid", err)
	}
}

func TestOpenPragmas(t *testing.T) {
	path := dbPath(t)
	s := openAt(t, path)
	for _, c := range []struct{ pragma, want string }{
		{"journal_mode", "wal"},
		{"foreign_keys", "1"},
		{"busy_timeout", "5000"},
		{"user_version", fmt.Sprint(len(sqliteMigrations))},
	} {
		for _, db := range []*sql.DB{s.w, s.r} {
			var got string
			if err := db.QueryRow("PRAGMA " + c.pragma).Scan(&got); err != nil || got != c.want {
				t.Errorf("PRAGMA %s = %q, %v; want %q", c.pragma, got, err, c.want)
			}
		}
	}
	if _, err := s.r.Exec("INSERT INTO meta (key, value) VALUES ('a', 'b')"); err == nil {
		t.Error("reader connection accepted a write")
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("database file mode %o, want 600", perm)
	}
}

func TestMigrateFromEmptyFile(t *testing.T) {
	path := dbPath(t)
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s := openAt(t, path)
	var v int
	if err := s.r.QueryRow("PRAGMA user_version").Scan(&v); err != nil || v != len(sqliteMigrations) {
		t.Fatalf("user_version = %d, %v; want %d", v, err, len(sqliteMigrations))
	}
	var next int64
	if err := s.r.QueryRow("SELECT next FROM sequences WHERE name = 'rule_id'").Scan(&next); err != nil || next != int64(FirstRuleID) {
		t.Errorf("rule id sequence starts at %d, %v; want %d", next, err, FirstRuleID)
	}
	if _, err := s.Commit(context.Background(), Commit{Set: policy.NewSet()}); err != nil {
		t.Errorf("commit on a migrated file: %v", err)
	}
}

func TestMigrateSteps(t *testing.T) {
	ctx := context.Background()
	db, err := sql.Open("sqlite", filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	steps := []string{
		"CREATE TABLE a (x INTEGER); INSERT INTO a VALUES (1);",
		"ALTER TABLE a ADD COLUMN y TEXT NOT NULL DEFAULT 'v2';",
		"CREATE TABLE broken (",
	}
	version := func() int {
		var v int
		if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if err := Migrate(ctx, db, steps[:1]); err != nil || version() != 1 {
		t.Fatalf("migrate to 1: %v, version %d", err, version())
	}
	if err := Migrate(ctx, db, steps[:2]); err != nil || version() != 2 {
		t.Fatalf("migrate 1 -> 2: %v, version %d", err, version())
	}
	var y string
	if err := db.QueryRow("SELECT y FROM a").Scan(&y); err != nil || y != "v2" {
		t.Errorf("after step 2: y = %q, %v", y, err)
	}
	if err := Migrate(ctx, db, steps[:2]); err != nil {
		t.Errorf("migrate when current: %v", err)
	}
	err = Migrate(ctx, db, steps)
	if err == nil || !strings.Contains(err.Error(), "schema 3") || version() != 2 {
		t.Errorf("broken step: %v, version %d; want an error naming schema 3 and version 2 kept", err, version())
	}
	if err := Migrate(ctx, db, steps[:1]); err == nil || !strings.Contains(err.Error(), "newer") {
		t.Errorf("older release on a newer schema: %v, want a refusal", err)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := dbPath(t)
	s := openAt(t, path)
	if _, err := s.w.Exec(fmt.Sprintf("PRAGMA user_version = %d", len(sqliteMigrations)+1)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s2, err := OpenSQLite(path); err == nil {
		s2.Close()
		t.Fatal("opened a database from a newer release")
	}
}
