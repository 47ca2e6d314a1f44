package eval

import (
	"reflect"
	"slices"
	"testing"

	"github.com/bulkhead/bulkhead/internal/policy"
)

// TestDirectoryGroups: two users on one RDSH host; only the one in the
// hr directory group reaches the HR application.
func TestDirectoryGroups(t *testing.T) {
	s := newSet(drop,
		wl("rdsh1", "app=vdi", "10.77.5.10"),
		wl("hr1", "app=hr", "10.77.4.10"),
		grp("hr-users", policy.GroupSpec{DirectoryGroups: []string{"hr"}}),
		grp("it-users", policy.GroupSpec{DirectoryGroups: []string{"it", "unsynced"}, Users: []string{"dave"}}),
		grp("people", policy.GroupSpec{Groups: []string{"hr-users", "it-users"}}),
		grp("hr-app", policy.GroupSpec{Match: `app == "hr"`}),
		section("p", policy.CategoryApplication, 0, nil,
			rl("hr", "hr-users", "hr-app", "tcp/80", allow),
			rl("ssh", "people", "hr-app", "tcp/22", allow)),
	)
	withDir, err := Compile(s, WithDirectory(naiveDirectory))
	if err != nil {
		t.Fatal(err)
	}
	without := mustCompile(t, s)
	for _, tc := range []struct {
		name, user, port string
		want, wantNoDir  string
	}{
		{"alice in hr", "alice", "tcp/80", "p/hr", "default"},
		{"bob not in hr", "bob", "tcp/80", "default", "default"},
		{"no user", "", "tcp/80", "default", "default"},
		{"carol through it into people", "carol", "tcp/22", "p/ssh", "default"},
		{"alice through hr-users into people", "alice", "tcp/22", "p/ssh", "default"},
		{"dave listed by name", "dave", "tcp/22", "p/ssh", "p/ssh"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := fl("10.77.5.10", "10.77.4.10", tc.port, user(tc.user))
			if d := withDir.Evaluate(f); d.Rule != tc.want {
				t.Errorf("with the directory: rule %s, want %s", d.Rule, tc.want)
			} else if ref := naiveEvaluate(s, f); !reflect.DeepEqual(ref, d) {
				t.Errorf("reference disagrees:\n ref %+v\n got %+v", ref, d)
			}
			if d := without.Evaluate(f); d.Rule != tc.wantNoDir {
				t.Errorf("without a directory: rule %s, want %s", d.Rule, tc.wantNoDir)
			}
		})
	}
	m, _ := withDir.Members("people")
	if want := []string{"alice", "carol", "dave"}; !slices.Equal(m.Users, want) {
		t.Errorf("members of people: users %v, want %v", m.Users, want)
	}
}
