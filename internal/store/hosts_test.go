package store

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBootstrapTokenEnroll(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	s := openTest(t, WithClock(clock.Now))

	if _, _, err := s.CreateBootstrapToken(ctx, "", "admin", 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("ttl 0: %v, want ErrInvalid (a bootstrap token must expire)", err)
	}
	anyHost, tok, err := s.CreateBootstrapToken(ctx, "", "admin", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(anyHost, "bhb_") || tok.Expires.Sub(tok.Created) != time.Hour || tok.CreatedBy != "admin" {
		t.Errorf("token %+v, secret %q", tok, anyHost)
	}
	clock.Advance(time.Second) // so that the listing's order is the creation order
	forB, _, err := s.CreateBootstrapToken(ctx, "host-b", "admin", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	short, _, err := s.CreateBootstrapToken(ctx, "", "admin", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// Nothing but the hash is at rest.
	var n int
	if err := s.r.QueryRow("SELECT COUNT(*) FROM bootstrap_tokens WHERE hash = ? OR CAST(hash AS TEXT) LIKE ?", []byte(anyHost), "%"+anyHost[4:]+"%").Scan(&n); err != nil || n != 0 {
		t.Errorf("secret found in the table (%d rows, %v)", n, err)
	}

	host := func(name string) Host { return Host{Name: name, CertSerial: "01", CertFingerprint: "ff"} }
	clock.Advance(2 * time.Minute)
	tests := []struct {
		name   string
		secret string
		host   string
		want   error
	}{
		{"unknown", "bhb_" + strings.Repeat("A", 43), "host-a", ErrNotFound},
		{"malformed", "hello", "host-a", ErrNotFound},
		{"api token shape", "bh_" + strings.Repeat("A", 43), "host-a", ErrNotFound},
		{"expired", short, "host-a", ErrTokenExpired},
		{"other host", forB, "host-a", ErrTokenHost},
		{"any host", anyHost, "host-a", nil},
		{"reused", anyHost, "host-c", ErrTokenUsed},
		{"reused by the same host", anyHost, "host-a", ErrTokenUsed},
		{"for this host", forB, "host-b", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := s.EnrollHost(ctx, tt.secret, host(tt.host))
			if !errors.Is(err, tt.want) {
				t.Fatalf("EnrollHost: %v, want %v", err, tt.want)
			}
			if tt.want == nil && (h.Name != tt.host || !h.Enrolled.Equal(clock.Now())) {
				t.Errorf("host %+v", h)
			}
		})
	}
	toks, err := s.BootstrapTokens(ctx)
	if err != nil || len(toks) != 3 {
		t.Fatalf("BootstrapTokens: %d, %v", len(toks), err)
	}
	if toks[0].UsedBy != "host-a" || toks[0].Used.IsZero() || toks[1].UsedBy != "host-b" || !toks[2].Used.IsZero() {
		t.Errorf("tokens after enrollment: %+v", toks)
	}
	// A refused host-b attempt (the "other host" case) spent nothing:
	// host-b could still enroll with it afterwards.
	if _, err := s.Host(ctx, "host-c"); !errors.Is(err, ErrNotFound) {
		t.Errorf("host-c recorded after a refused enrollment: %v", err)
	}
}

func TestHostStatusAndRevoke(t *testing.T) {
	ctx := context.Background()
	clock := newFakeClock()
	path := filepath.Join(t.TempDir(), "bulkhead.db")
	s := openAt(t, path, WithClock(clock.Now))
	enroll := func(name, fp string) Host {
		t.Helper()
		secret, _, err := s.CreateBootstrapToken(ctx, "", "admin", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		h, err := s.EnrollHost(ctx, secret, Host{Name: name, CertSerial: "0a", CertFingerprint: fp})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	enroll("h1", "fp1")
	enroll("h0", "fp0")

	st := HostStatus{LastSeen: clock.Now(), RealizedRevision: 7, RealizedDigest: []byte{1, 2, 3}, LastError: "boom"}
	if err := s.UpdateHostStatus(ctx, "h1", st); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateHostStatus(ctx, "nope", st); !errors.Is(err, ErrNotFound) {
		t.Errorf("status of an unknown host: %v", err)
	}
	h, err := s.Host(ctx, "h1")
	if err != nil {
		t.Fatal(err)
	}
	if h.RealizedRevision != 7 || !bytes.Equal(h.RealizedDigest, st.RealizedDigest) || h.LastError != "boom" || !h.LastSeen.Equal(st.LastSeen) || !h.Revoked.IsZero() {
		t.Errorf("host after update: %+v", h)
	}

	clock.Advance(time.Minute)
	if err := s.RevokeHost(ctx, "h1"); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeHost(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoke of an unknown host: %v", err)
	}
	hosts, err := s.Hosts(ctx)
	if err != nil || len(hosts) != 2 || hosts[0].Name != "h0" || hosts[1].Name != "h1" {
		t.Fatalf("Hosts: %+v, %v", hosts, err)
	}
	if !hosts[1].Revoked.Equal(clock.Now()) || !hosts[0].Revoked.IsZero() {
		t.Errorf("revoked times: %v, %v", hosts[0].Revoked, hosts[1].Revoked)
	}

	// Enrolling again replaces the certificate and clears the revocation
	// and what the old agent had reported.
	again := enroll("h1", "fp1-new")
	h, err = s.Host(ctx, "h1")
	if err != nil {
		t.Fatal(err)
	}
	if h.CertFingerprint != "fp1-new" || !h.Revoked.IsZero() || h.RealizedRevision != 0 || h.LastError != "" || h.RealizedDigest != nil || !h.Enrolled.Equal(again.Enrolled) {
		t.Errorf("host after re-enrollment: %+v", h)
	}

	// It all survives a reopen.
	s.Close()
	s2 := openAt(t, path, WithClock(clock.Now))
	if h2, err := s2.Host(ctx, "h1"); err != nil || h2.CertFingerprint != "fp1-new" {
		t.Errorf("after reopen: %+v, %v", h2, err)
	}
}

// TestMigrateToHosts opens a database made by the first schema step alone,
// as a release without agents left it, and finds the host tables added.
func TestMigrateToHosts(t *testing.T) {
	path := dbPath(t)
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if err := Migrate(context.Background(), db, sqliteMigrations[:1]); err != nil {
		t.Fatal(err)
	}
	db.Close()
	s := openAt(t, path)
	if _, _, err := s.CreateBootstrapToken(context.Background(), "", "x", time.Hour); err != nil {
		t.Errorf("bootstrap token after migration: %v", err)
	}
	if hosts, err := s.Hosts(context.Background()); err != nil || len(hosts) != 0 {
		t.Errorf("hosts after migration: %v, %v", hosts, err)
	}
}
