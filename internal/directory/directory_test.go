package directory

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNestedGroups(t *testing.T) {
	d := New(
		[]User{{Source: "a", Name: "alice"}, {Source: "a", Name: "bob"}, {Source: "b", Name: "alice"}},
		[]Group{
			{Source: "a", Name: "hr", Users: []string{"alice"}, Groups: []string{"hr-managers", "missing"}},
			{Source: "a", Name: "hr-managers", Users: []string{"dave"}},
			{Source: "a", Name: "x", Groups: []string{"y"}, Users: []string{"bob"}},
			{Source: "a", Name: "y", Groups: []string{"x"}},
			{Source: "b", Name: "hr", Users: []string{"carol"}}, // merged with a's hr
		})
	for user, want := range map[string][]string{
		"alice": {"hr"}, "dave": {"hr", "hr-managers"}, "bob": {"x", "y"}, "carol": {"hr"}, "nobody": nil,
	} {
		if got := d.GroupsOf(user); !slices.Equal(got, want) {
			t.Errorf("GroupsOf(%s) = %v, want %v", user, got, want)
		}
	}
	if got := d.Members("hr"); !slices.Equal(got, []string{"alice", "carol", "dave"}) {
		t.Errorf("Members(hr) = %v", got)
	}
	if n := len(d.Users()); n != 2 {
		t.Errorf("%d users, want 2 (alice of two sources once)", n)
	}
	var nilDir *Directory
	if nilDir.GroupsOf("alice") != nil || nilDir.Members("hr") != nil {
		t.Error("a nil directory has no groups")
	}
}

var t0 = time.Date(2024, 5, 1, 9, 0, 0, 0, time.UTC)

func mustEvent(t *testing.T, s string) Event {
	t.Helper()
	e, err := ParseEvent([]byte(s), t0)
	if err != nil {
		t.Fatalf("ParseEvent(%s): %v", s, err)
	}
	return e
}

func TestParseEvent(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Event
	}{
		{`{"EventID": 4624, "TargetUserName": "Alice", "TargetDomainName": "CORP", "IpAddress": "::ffff:10.77.6.10", "IpPort": "51234", "TimeCreated": "2024-05-01T09:00:00Z", "TargetLogonId": "0x3E7A1", "LogonType": 10, "Computer": "dc1"}`,
			Event{Logon: true, User: "alice", Domain: "corp", IP: netip.MustParseAddr("10.77.6.10"), Start: t0, LogonID: "0x3e7a1", Source: "windows"}},
		{`{"EventID": "4634", "TimeCreated": "/Date(1714557600000)/", "EventData": {"TargetUserName": "alice", "TargetLogonId": "0x3e7a1"}}`,
			Event{User: "alice", End: time.UnixMilli(1714557600000).UTC(), LogonID: "0x3e7a1", Source: "windows"}},
		{`{"EventId": 4624, "TimeCreated": {"SystemTime": "2024-05-01T09:00:00.5Z"}, "EventData": {"TargetUserName": "bob", "IpAddress": "10.0.0.5"}}`,
			Event{Logon: true, User: "bob", IP: netip.MustParseAddr("10.0.0.5"), Start: t0.Add(500 * time.Millisecond), Source: "windows"}},
		{`{"user": "bob", "ip": "10.77.5.10", "ports": "21000-21999", "start": "2024-05-01T09:00:00Z"}`,
			Event{Logon: true, User: "bob", IP: netip.MustParseAddr("10.77.5.10"), Ports: PortRange{21000, 21999}, Start: t0, Source: "rdsh"}},
		{`{"user": "carol", "ip": "10.0.0.7", "start": "2024-05-01T09:00:00Z", "end": "2024-05-01T10:00:00Z"}`,
			Event{Logon: true, User: "carol", IP: netip.MustParseAddr("10.0.0.7"), Start: t0, End: t0.Add(time.Hour), Source: "login"}},
		{`{"user": "carol", "ip": "10.0.0.7", "end": "2024-05-01T10:00:00Z"}`,
			Event{User: "carol", IP: netip.MustParseAddr("10.0.0.7"), End: t0.Add(time.Hour), Source: "login"}},
		{`{"user": "dave", "ip": "fd00::1"}`,
			Event{Logon: true, User: "dave", IP: netip.MustParseAddr("fd00::1"), Start: t0, Source: "login"}},
	} {
		if got := mustEvent(t, tc.in); got != tc.want {
			t.Errorf("ParseEvent(%s)\n got %+v\nwant %+v", tc.in, got, tc.want)
		}
	}
}

func TestParseEventErrors(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ignored  bool
	}{
		{`[]`, "not a JSON object", false},
		{`null`, "not a JSON object", false},
		{`{"EventID": 4625, "TargetUserName": "x"}`, "EventID 4625", true},
		{`{"EventID": "x"}`, "EventID", false},
		{`{"EventID": 4624, "TargetUserName": "WS01$", "IpAddress": "10.0.0.1", "TimeCreated": "2024-05-01T09:00:00Z"}`, "computer", true},
		{`{"EventID": 4624, "TargetUserName": "alice", "IpAddress": "-", "TimeCreated": "2024-05-01T09:00:00Z"}`, "local logon", true},
		{`{"EventID": 4624, "TargetUserName": "alice", "IpAddress": "127.0.0.1", "TimeCreated": "2024-05-01T09:00:00Z"}`, "local logon", true},
		{`{"EventID": 4624, "TargetUserName": "alice", "IpAddress": "10.0.0.300", "TimeCreated": "2024-05-01T09:00:00Z"}`, `IpAddress "10.0.0.300"`, false},
		{`{"EventID": 4624, "TargetUserName": "alice", "IpAddress": "10.0.0.3", "TimeCreated": "yesterday"}`, "TimeCreated", false},
		{`{"EventID": 4624, "IpAddress": "10.0.0.3", "TimeCreated": "2024-05-01T09:00:00Z"}`, "TargetUserName: missing", false},
		{`{"EventID": 4634, "TargetUserName": "alice", "TimeCreated": "2024-05-01T09:00:00Z"}`, "TargetLogonId: missing", false},
		{`{"EventID": 4634, "EventData": 5}`, "EventData", false},
		{`{"user": "a", "ip": "10.0.0.1", "port": "1"}`, `unknown field "port"`, false},
		{`{"ip": "10.0.0.1"}`, "user: missing", false},
		{`{"user": "a", "ip": "host1"}`, `ip "host1"`, false},
		{`{"user": "a", "ip": "10.0.0.1", "ports": "2000-1000"}`, `ports "2000-1000"`, false},
		{`{"user": "a", "ip": "10.0.0.1", "start": "2024-05-01T10:00:00Z", "end": "2024-05-01T09:00:00Z"}`, "before start", false},
	} {
		_, err := ParseEvent([]byte(tc.in), t0)
		if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, ErrIgnored) != tc.ignored {
			t.Errorf("ParseEvent(%s) = %v, want an error with %q (ignored %t)", tc.in, err, tc.want, tc.ignored)
		}
	}
}

func FuzzParseEvent(f *testing.F) {
	for _, s := range []string{
		`{"EventID": 4624, "TargetUserName": "alice", "IpAddress": "10.0.0.1", "TimeCreated": "2024-05-01T09:00:00Z", "TargetLogonId": "0x1"}`,
		`{"EventID": 4634, "TimeCreated": "/Date(1714557600000+0200)/", "EventData": {"TargetUserName": "alice", "TargetLogonId": "0x1"}}`,
		`{"user": "bob", "ip": "10.77.5.10", "ports": "21000-21999", "start": "2024-05-01T09:00:00Z"}`,
		`{"TimeCreated": {"SystemTime": ""}, "EventID": 4624}`,
		`{}`, `[`, `"/Date(`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseEvent(b, t0)
		if err != nil {
			return
		}
		if e.User == "" || e.Logon && !e.IP.IsValid() || e.Logon && e.Start.IsZero() || !e.Logon && e.End.IsZero() {
			t.Fatalf("ParseEvent(%q) = %+v: an accepted event has a user, a logon an address and a start, a logoff an end", b, e)
		}
		tab := NewTable(nil)
		if _, err := tab.Apply(e); e.Logon && err != nil {
			t.Fatalf("Apply(%+v): %v", e, err)
		}
	})
}

func TestTableWho(t *testing.T) {
	rdsh := netip.MustParseAddr("10.77.5.10")
	vdi := netip.MustParseAddr("10.77.6.10")
	tab := NewTable(nil)
	apply := func(s string) *Session {
		t.Helper()
		got, err := tab.Apply(mustEvent(t, s))
		if err != nil {
			t.Fatalf("Apply(%s): %v", s, err)
		}
		return got
	}
	apply(`{"user": "admin", "ip": "10.77.5.10", "start": "2024-05-01T08:00:00Z"}`) // the console of the host
	apply(`{"user": "alice", "ip": "10.77.5.10", "ports": "20000-20999", "start": "2024-05-01T09:00:00Z"}`)
	apply(`{"user": "bob", "ip": "10.77.5.10", "ports": "21000-21999", "start": "2024-05-01T09:00:00Z"}`)
	s := apply(`{"EventID": 4624, "TargetUserName": "carol", "IpAddress": "10.77.6.10", "TimeCreated": "2024-05-01T09:00:00Z", "TargetLogonId": "0x10"}`)
	if again := apply(`{"EventID": 4624, "TargetUserName": "carol", "IpAddress": "10.77.6.10", "TimeCreated": "2024-05-01T09:00:00Z", "TargetLogonId": "0x10"}`); again != s {
		t.Error("a resent logon opened a second session")
	}
	apply(`{"EventID": 4634, "TargetUserName": "carol", "TimeCreated": "2024-05-01T10:00:00Z", "TargetLogonId": "0x10"}`)
	apply(`{"user": "dave", "ip": "10.77.6.10", "start": "2024-05-01T10:30:00Z"}`)

	at := func(h, m int) time.Time { return time.Date(2024, 5, 1, h, m, 0, 0, time.UTC) }
	for _, tc := range []struct {
		ip   netip.Addr
		port uint16
		at   time.Time
		want string
	}{
		{rdsh, 20500, at(9, 5), "alice"},
		{rdsh, 21999, at(9, 5), "bob"},
		{rdsh, 22000, at(9, 5), "admin"}, // no session of the range: the whole address
		{rdsh, 20500, at(8, 30), "admin"},
		{rdsh, 20500, at(7, 0), ""},
		{vdi, 40000, at(9, 30), "carol"},
		{vdi, 40000, at(10, 10), ""}, // logged off at 10:00
		{vdi, 40000, at(11, 0), "dave"},
		{netip.MustParseAddr("::ffff:10.77.6.10"), 1, at(11, 0), "dave"},
	} {
		got, _ := tab.Who(tc.ip, tc.port, tc.at)
		if got.User != tc.want {
			t.Errorf("Who(%s, %d, %s) = %q, want %q", tc.ip, tc.port, tc.at.Format("15:04"), got.User, tc.want)
		}
	}

	// Logoffs that match nothing say why.
	for _, tc := range []struct{ in, want string }{
		{`{"EventID": 4634, "TargetUserName": "carol", "TimeCreated": "2024-05-01T10:00:00Z", "TargetLogonId": "0x10"}`, "no open session of carol with logon id 0x10"},
		{`{"user": "bob", "ip": "10.77.5.10", "end": "2024-05-01T10:00:00Z"}`, "no open session of bob at 10.77.5.10"},
	} {
		if _, err := tab.Apply(mustEvent(t, tc.in)); err == nil || err.Error() != tc.want {
			t.Errorf("Apply(%s) = %v, want %q", tc.in, err, tc.want)
		}
	}
	// The RDSH logoff names its range.
	apply(`{"user": "bob", "ip": "10.77.5.10", "ports": "21000-21999", "end": "2024-05-01T10:00:00Z"}`)
	if got, _ := tab.Who(rdsh, 21000, at(10, 5)); got.User != "admin" {
		t.Errorf("after bob's logoff his ports are the host's: %q", got.User)
	}
	if n := len(tab.Sessions(rdsh)); n != 3 {
		t.Errorf("%d sessions at the RDSH host, want 3", n)
	}
	if n := tab.Prune(at(12, 0)); n != 2 {
		t.Errorf("pruned %d ended sessions, want 2 (carol's, bob's)", n)
	}
	if n := len(tab.Sessions(netip.Addr{})); n != 3 {
		t.Errorf("%d sessions left, want 3 (admin, alice, dave)", n)
	}
}

func TestParsePortRange(t *testing.T) {
	for in, want := range map[string]PortRange{"": {}, "20000-20999": {20000, 20999}, "443": {443, 443}, " 1 - 2 ": {1, 2}} {
		if got, err := ParsePortRange(in); err != nil || got != want {
			t.Errorf("ParsePortRange(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"0-5", "5-4", "x", "1-70000", "-"} {
		if _, err := ParsePortRange(in); err == nil {
			t.Errorf("ParsePortRange(%q): no error", in)
		}
	}
}
