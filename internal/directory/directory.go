// Package directory is user identity for policy: the users and groups of a
// directory (LDAP, Active Directory) with nested groups resolved, and who is
// at an address (and source port) at a time, from login sessions. It is pure;
// internal/directory/ldap reads a directory server.
package directory

import (
	"slices"
	"strings"
)

// User is a directory user as synced. Names are lowercase: directories
// compare them without case, and so does everything that looks them up.
type User struct {
	Source  string `json:"source"`
	Name    string `json:"name"`
	DN      string `json:"dn,omitempty"`
	Display string `json:"display,omitempty"`
}

// Group is a directory group and its direct members: user names and the
// names of nested groups.
type Group struct {
	Source string   `json:"source"`
	Name   string   `json:"name"`
	DN     string   `json:"dn,omitempty"`
	Users  []string `json:"users,omitempty"`
	Groups []string `json:"groups,omitempty"`
}

// Name normalizes a user or group name.
func Name(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// Directory is the users and groups of every synced source, merged by
// name, with each user's groups resolved through nesting. It is immutable.
type Directory struct {
	users   map[string]User
	groups  map[string]Group // members merged over sources
	groupOf map[string][]string
	members map[string][]string
}

// New resolves nesting: a user is in a group when it is a direct member or
// a member of a group nested in it, at any depth. Cycles are safe (a group
// nested in itself through others adds nothing). Groups named as members
// but not synced nest nothing.
func New(users []User, groups []Group) *Directory {
	d := &Directory{users: map[string]User{}, groups: map[string]Group{},
		groupOf: map[string][]string{}, members: map[string][]string{}}
	for _, u := range users {
		if _, ok := d.users[u.Name]; !ok {
			d.users[u.Name] = u
		}
	}
	direct := map[string][]string{}  // user -> groups listing it
	parents := map[string][]string{} // group -> groups nesting it
	for _, g := range groups {
		m := d.groups[g.Name]
		if m.Name == "" {
			m = Group{Source: g.Source, Name: g.Name, DN: g.DN}
		}
		m.Users = append(m.Users, g.Users...)
		m.Groups = append(m.Groups, g.Groups...)
		d.groups[g.Name] = m
		for _, u := range g.Users {
			direct[u] = append(direct[u], g.Name)
		}
		for _, c := range g.Groups {
			parents[c] = append(parents[c], g.Name)
		}
	}
	for name, g := range d.groups {
		slices.Sort(g.Users)
		g.Users = slices.Compact(g.Users)
		slices.Sort(g.Groups)
		g.Groups = slices.Compact(g.Groups)
		d.groups[name] = g
	}
	for u, gs := range direct {
		seen := map[string]bool{}
		queue := slices.Clone(gs)
		for len(queue) > 0 {
			g := queue[len(queue)-1]
			queue = queue[:len(queue)-1]
			if seen[g] {
				continue
			}
			seen[g] = true
			queue = append(queue, parents[g]...)
		}
		all := make([]string, 0, len(seen))
		for g := range seen {
			all = append(all, g)
			d.members[g] = append(d.members[g], u)
		}
		slices.Sort(all)
		d.groupOf[u] = all
	}
	for _, us := range d.members {
		slices.Sort(us)
	}
	return d
}

// GroupsOf returns the groups a user is in, nesting resolved, sorted.
func (d *Directory) GroupsOf(user string) []string {
	if d == nil {
		return nil
	}
	return d.groupOf[Name(user)]
}

// Members returns the users in a group, nesting resolved, sorted.
func (d *Directory) Members(group string) []string {
	if d == nil {
		return nil
	}
	return d.members[Name(group)]
}

// User returns a synced user.
func (d *Directory) User(name string) (User, bool) {
	if d == nil {
		return User{}, false
	}
	u, ok := d.users[Name(name)]
	return u, ok
}

// Users lists the synced users by name.
func (d *Directory) Users() []User {
	if d == nil {
		return nil
	}
	out := make([]User, 0, len(d.users))
	for _, u := range d.users {
		out = append(out, u)
	}
	slices.SortFunc(out, func(a, b User) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Groups lists the synced groups by name, with their direct members.
func (d *Directory) Groups() []Group {
	if d == nil {
		return nil
	}
	out := make([]Group, 0, len(d.groups))
	for _, g := range d.groups {
		out = append(out, g)
	}
	slices.SortFunc(out, func(a, b Group) int { return strings.Compare(a.Name, b.Name) })
	return out
}
