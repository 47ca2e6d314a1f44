package store

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/directory"
	"github.com/bulkhead/bulkhead/internal/inventory"
)

func TestDirectorySourcesAndSync(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if _, err := s.CreateSource(ctx, Source{Name: "vc1", Kind: inventory.KindVCenter, URL: "https://vc/sdk", Interval: time.Minute}); err != nil {
		t.Fatal(err)
	}
	src := DirectorySource{Name: "corp", URL: "ldap://dc1:389", BindDN: "cn=r,dc=x", Password: "pw", BaseDN: "dc=x", StartTLS: true, Interval: 15 * time.Minute}
	audit := []AuditEntry{{Actor: "t", Action: "source.create", Object: "Source/corp"}}
	if _, err := s.CreateDirectorySource(ctx, src, audit); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"corp", "vc1"} {
		src.Name = name
		if _, err := s.CreateDirectorySource(ctx, src, nil); !errors.Is(err, ErrConflict) {
			t.Errorf("directory source named %s: %v, want ErrConflict", name, err)
		}
	}
	got, err := s.DirectorySource(ctx, "corp")
	if err != nil || got.BindDN != "cn=r,dc=x" || got.Password != "pw" || !got.StartTLS || got.Interval != 15*time.Minute || !got.LastSync.IsZero() {
		t.Fatalf("source = %+v, %v", got, err)
	}
	at := time.Date(2026, 4, 1, 8, 0, 0, 0, time.UTC)
	if err := s.RecordDirectorySync(ctx, "corp", at, "boom"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.DirectorySource(ctx, "corp"); !got.LastSync.Equal(at) || got.LastError != "boom" {
		t.Errorf("after sync: %+v", got)
	}

	users := []directory.User{{Source: "corp", Name: "alice", DN: "uid=alice"}, {Source: "corp", Name: "dave"}}
	groups := []directory.Group{
		{Source: "corp", Name: "hr", Users: []string{"alice", "alice"}, Groups: []string{"hr-managers"}},
		{Source: "corp", Name: "hr-managers", Users: []string{"dave"}},
	}
	if err := s.ReplaceDirectory(ctx, "corp", users, groups, []AuditEntry{{Actor: "t", Action: "sync", Object: "Source/corp"}}); err != nil {
		t.Fatal(err)
	}
	// A second sync replaces the first whole.
	users = users[:1]
	groups = groups[:1]
	groups[0].Users = []string{"alice"}
	if err := s.ReplaceDirectory(ctx, "corp", users, groups, nil); err != nil {
		t.Fatal(err)
	}
	u, g, err := s.Directory(ctx)
	if err != nil || len(u) != 1 || len(g) != 1 || !slices.Equal(g[0].Users, []string{"alice"}) || !slices.Equal(g[0].Groups, []string{"hr-managers"}) {
		t.Fatalf("directory = %+v %+v, %v", u, g, err)
	}
	if err := s.ReplaceDirectory(ctx, "other", []directory.User{{Source: "corp", Name: "x"}}, nil, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("user of another source: %v, want ErrInvalid", err)
	}
	if err := s.ReplaceDirectory(ctx, "gone", nil, nil, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("sync of an unknown source: %v, want ErrNotFound", err)
	}
	if err := s.DeleteDirectorySource(ctx, "corp", []AuditEntry{{Actor: "t", Action: "source.delete", Object: "Source/corp"}}); err != nil {
		t.Fatal(err)
	}
	if u, g, _ := s.Directory(ctx); len(u)+len(g) != 0 {
		t.Errorf("deleted source left %d users, %d groups", len(u), len(g))
	}
	if err := s.DeleteDirectorySource(ctx, "corp", nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	entries, err := s.AuditLog(ctx, AuditFilter{Object: "Source/corp"})
	if err != nil || len(entries) != 3 {
		t.Errorf("audit of Source/corp: %d entries, %v; want create, sync, delete", len(entries), err)
	}
}

func TestSessions(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	t0 := time.Date(2026, 4, 1, 8, 0, 0, 0, time.UTC)
	a := &directory.Session{User: "alice", IP: netip.MustParseAddr("10.77.5.10"), Ports: directory.PortRange{Lo: 20000, Hi: 20999}, Start: t0, Source: "rdsh"}
	b := &directory.Session{User: "bob", Domain: "corp", IP: netip.MustParseAddr("fd00::1"), Start: t0, End: t0.Add(time.Hour), Source: "windows", LogonID: "0x1"}
	if err := s.SaveSessions(ctx, []*directory.Session{a, b}); err != nil {
		t.Fatal(err)
	}
	if a.ID == 0 || b.ID == 0 || a.ID == b.ID {
		t.Fatalf("ids %d, %d", a.ID, b.ID)
	}
	a.End = t0.Add(3 * time.Hour)
	if err := s.SaveSessions(ctx, []*directory.Session{a}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Sessions(ctx, t0.Add(2*time.Hour))
	if err != nil || len(got) != 1 || got[0] != *a {
		t.Fatalf("sessions ended after 10:00 = %+v, %v; want %+v", got, err, *a)
	}
	if got, _ := s.Sessions(ctx, time.Time{}); len(got) != 2 || got[1] != *b {
		t.Errorf("all sessions = %+v", got)
	}
	if err := s.SaveSessions(ctx, []*directory.Session{{User: "x"}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("session without address: %v", err)
	}
}
