// Package slapdtest starts Debian's OpenLDAP server (slapd) for a test: a
// private configuration and database in a temporary directory, a free
// loopback port, the given LDIF loaded, and the process killed when the
// test ends.
package slapdtest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Binary is where Debian installs slapd.
const Binary = "/usr/sbin/slapd"

// Server is a running slapd.
type Server struct {
	URL    string // ldap://127.0.0.1:PORT
	BaseDN string
	// AdminDN and AdminPassword are the database's root.
	AdminDN, AdminPassword string
	// ReaderDN and ReaderPassword are a plain account that may read
	// everything, under size limits that only paged searches get past.
	ReaderDN, ReaderPassword string
}

// Options shape the directory.
type Options struct {
	BaseDN string // dc=lab,dc=test when empty
	// SizeLimit limits the entries one unpaged search by the reader may
	// return; a paged search may return any number in pages of at most
	// that size. 0: no limit.
	SizeLimit int
}

// Start runs slapd with ldif (entries under the base DN; the base entry
// and the reader account are added first) and stops it at the end of the
// test. It skips the test when slapd is not installed, unless CI is set.
func Start(t testing.TB, ldif string, o Options) *Server {
	t.Helper()
	if _, err := os.Stat(Binary); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("slapd is needed (apt-get install slapd ldap-utils): %v", err)
		}
		t.Skipf("needs %s (apt-get install slapd ldap-utils)", Binary)
	}
	if o.BaseDN == "" {
		o.BaseDN = "dc=lab,dc=test"
	}
	dc, _, _ := strings.Cut(strings.TrimPrefix(o.BaseDN, "dc="), ",")
	s := &Server{BaseDN: o.BaseDN, AdminDN: "cn=admin," + o.BaseDN, AdminPassword: "admin-secret",
		ReaderDN: "cn=reader," + o.BaseDN, ReaderPassword: "reader-secret"}
	dir := t.TempDir()
	db := filepath.Join(dir, "db")
	if err := os.Mkdir(db, 0o700); err != nil {
		t.Fatal(err)
	}
	limits := ""
	if o.SizeLimit > 0 {
		limits = fmt.Sprintf("limits dn.exact=%q size.soft=%d size.hard=%d size.pr=%d size.prtotal=unlimited\n",
			s.ReaderDN, o.SizeLimit, o.SizeLimit, o.SizeLimit)
	}
	conf := fmt.Sprintf(`include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile %s
database mdb
suffix %q
rootdn %q
rootpw %s
directory %s
maxsize 33554432
access to * by * read
%s`, filepath.Join(dir, "slapd.pid"), o.BaseDN, s.AdminDN, s.AdminPassword, db, limits)
	confPath := filepath.Join(dir, "slapd.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("dn: %s\nobjectClass: dcObject\nobjectClass: organization\ndc: %s\no: %s\n\n"+
		"dn: %s\nobjectClass: simpleSecurityObject\nobjectClass: organizationalRole\ncn: reader\nuserPassword: %s\n\n",
		o.BaseDN, dc, dc, s.ReaderDN, s.ReaderPassword)
	ldifPath := filepath.Join(dir, "data.ldif")
	if err := os.WriteFile(ldifPath, []byte(base+ldif), 0o600); err != nil {
		t.Fatal(err)
	}
	// slapadd loads the database offline: faster than ldapadd, and an
	// LDIF error names its line before the server starts.
	if out, err := exec.Command("/usr/sbin/slapadd", "-f", confPath, "-l", ldifPath).CombinedOutput(); err != nil {
		t.Fatalf("slapadd: %v\n%s", err, out)
	}

	port := freePort(t)
	s.URL = fmt.Sprintf("ldap://127.0.0.1:%d", port)
	var logs bytes.Buffer
	cmd := exec.Command(Binary, "-f", confPath, "-h", s.URL+"/", "-d", "0")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start slapd: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("slapd output:\n%s", logs.String())
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return s
		}
		select {
		case <-done:
			t.Fatalf("slapd exited: %v\n%s", cmd.ProcessState, logs.String())
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-done
			t.Fatalf("slapd does not listen on %s after 10s: %v\n%s", s.URL, err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
