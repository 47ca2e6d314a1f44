package ldap

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/bulkhead/bulkhead/internal/directory"
	"github.com/bulkhead/bulkhead/internal/directory/slapdtest"
)

// labLDIF is a small company: people in ou=people, groups of names in
// ou=groups (hr-managers nested in hr, hr in staff, a cycle between loop-a
// and loop-b), a POSIX group listing user names, and a member outside the
// synced tree.
var labLDIF = `dn: ou=people,dc=lab,dc=test
objectClass: organizationalUnit
ou: people

dn: ou=groups,dc=lab,dc=test
objectClass: organizationalUnit
ou: groups

` + people + `
dn: cn=hr,ou=groups,dc=lab,dc=test
objectClass: groupOfNames
cn: hr
member: uid=alice,ou=people,dc=lab,dc=test
member: CN=HR-Managers, OU=Groups, DC=lab, DC=test

dn: cn=hr-managers,ou=groups,dc=lab,dc=test
objectClass: groupOfNames
cn: hr-managers
member: uid=dave,ou=people,dc=lab,dc=test

dn: cn=staff,ou=groups,dc=lab,dc=test
objectClass: groupOfNames
cn: staff
member: cn=hr,ou=groups,dc=lab,dc=test
member: uid=bob,ou=people,dc=lab,dc=test

dn: cn=loop-a,ou=groups,dc=lab,dc=test
objectClass: groupOfNames
cn: loop-a
member: cn=loop-b,ou=groups,dc=lab,dc=test
member: uid=carol,ou=people,dc=lab,dc=test

dn: cn=loop-b,ou=groups,dc=lab,dc=test
objectClass: groupOfNames
cn: loop-b
member: cn=loop-a,ou=groups,dc=lab,dc=test
member: uid=frank,ou=people,dc=lab,dc=test
member: uid=ghost,ou=elsewhere,dc=lab,dc=test

dn: cn=unix,ou=groups,dc=lab,dc=test
objectClass: posixGroup
cn: unix
gidNumber: 5000
memberUid: erin
memberUid: Bob
`

var people = func() string {
	var b strings.Builder
	for _, n := range []string{"alice", "bob", "carol", "dave", "frank"} {
		fmt.Fprintf(&b, "dn: uid=%s,ou=people,dc=lab,dc=test\nobjectClass: inetOrgPerson\nuid: %s\ncn: %s\nsn: %s\ndisplayName: %s Example\n\n",
			n, n, n, n, strings.ToUpper(n[:1])+n[1:])
	}
	b.WriteString("dn: uid=erin,ou=people,dc=lab,dc=test\nobjectClass: account\nobjectClass: posixAccount\nuid: erin\ncn: erin\nuidNumber: 5001\ngidNumber: 5000\nhomeDirectory: /home/erin\n\n")
	return b.String()
}()

func TestSyncSlapd(t *testing.T) {
	srv := slapdtest.Start(t, labLDIF, slapdtest.Options{SizeLimit: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// The reader's unpaged searches stop at 3 entries: only paging gets
	// every user.
	conn, err := goldap.DialURL(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Bind(srv.ReaderDN, srv.ReaderPassword); err != nil {
		t.Fatal(err)
	}
	_, err = conn.Search(goldap.NewSearchRequest(srv.BaseDN, goldap.ScopeWholeSubtree, goldap.NeverDerefAliases, 0, 0, false, DefaultUserFilter, nil, nil))
	conn.Close()
	if !goldap.IsErrorWithCode(err, goldap.LDAPResultSizeLimitExceeded) {
		t.Fatalf("unpaged search as the reader: err = %v, want size limit exceeded", err)
	}

	res, err := Sync(ctx, Config{Source: "corp", URL: srv.URL, BindDN: srv.ReaderDN, Password: srv.ReaderPassword, BaseDN: srv.BaseDN, PageSize: 2})
	if err != nil {
		t.Fatal(err)
	}
	var users []string
	for _, u := range res.Users {
		users = append(users, u.Name)
		if u.Source != "corp" || u.DN == "" {
			t.Errorf("user %+v: want source corp and a DN", u)
		}
	}
	slices.Sort(users)
	if want := []string{"alice", "bob", "carol", "dave", "erin", "frank"}; !slices.Equal(users, want) {
		t.Fatalf("users = %v, want %v", users, want)
	}
	if len(res.Skipped) != 1 || !strings.Contains(res.Skipped[0], "uid=ghost") {
		t.Errorf("skipped = %q, want the member outside the tree", res.Skipped)
	}

	d := directory.New(res.Users, res.Groups)
	for user, want := range map[string][]string{
		"alice": {"hr", "staff"},
		"dave":  {"hr", "hr-managers", "staff"}, // two levels of nesting
		"bob":   {"staff", "unix"},              // memberUid "Bob" names him without case
		"carol": {"loop-a", "loop-b"},           // the cycle ends
		"frank": {"loop-a", "loop-b"},
		"erin":  {"unix"},
	} {
		if got := d.GroupsOf(user); !slices.Equal(got, want) {
			t.Errorf("groups of %s = %v, want %v", user, got, want)
		}
	}
	if got, want := d.Members("HR"), []string{"alice", "dave"}; !slices.Equal(got, want) {
		t.Errorf("members of HR = %v, want %v", got, want)
	}
	if u, ok := d.User("alice"); !ok || u.Display != "Alice Example" {
		t.Errorf("alice = %+v, want display name Alice Example", u)
	}
}

func TestSyncErrors(t *testing.T) {
	srv := slapdtest.Start(t, "", slapdtest.Options{})
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"bad url", Config{URL: "http://x", BaseDN: "dc=lab,dc=test"}, `url "http://x"`},
		{"no base", Config{URL: srv.URL}, "base DN: missing"},
		{"bad filter", Config{URL: srv.URL, BaseDN: "dc=lab,dc=test", UserFilter: "(uid=alice"}, "user filter"},
		{"wrong password", Config{URL: srv.URL, BaseDN: srv.BaseDN, BindDN: srv.ReaderDN, Password: "nope"}, "bind as cn=reader,dc=lab,dc=test"},
		{"starttls unsupported", Config{URL: srv.URL, BaseDN: srv.BaseDN, StartTLS: true}, "StartTLS"},
		{"nothing listens", Config{URL: "ldap://127.0.0.1:1", BaseDN: srv.BaseDN}, "connect ldap://127.0.0.1:1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Source = "corp"
			_, err := Sync(ctx, tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "ldap corp: ") {
				t.Fatalf("err = %v, want one starting with \"ldap corp: \" and containing %q", err, tc.want)
			}
		})
	}
}
