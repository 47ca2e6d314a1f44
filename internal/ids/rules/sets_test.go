package rules

import (
	"net/netip"
	"strings"
	"testing"
)

func TestAddrSet(t *testing.T) {
	vars := DefaultVars()
	if err := vars.Set("WEB", "[10.1.0.0/16,!10.1.2.0/24]"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		spec    string
		in, out []string
	}{
		{"any", []string{"1.2.3.4", "::1"}, nil},
		{"10.0.0.1", []string{"10.0.0.1"}, []string{"10.0.0.2"}},
		{"10.0.0.0/8", []string{"10.255.0.1"}, []string{"11.0.0.1", "::1"}},
		{"10.0.0.0/255.0.0.0", []string{"10.255.0.1"}, []string{"11.0.0.1"}},
		{"10.0.0.5-10.0.0.7", []string{"10.0.0.5", "10.0.0.7"}, []string{"10.0.0.4", "10.0.0.8"}},
		{"2001:db8::/32", []string{"2001:db8::1"}, []string{"2001:db9::1", "10.0.0.1"}},
		{"!10.0.0.0/8", []string{"11.0.0.1", "::1"}, []string{"10.1.1.1"}},
		{"[10.0.0.0/8,192.168.0.0/16]", []string{"10.0.0.1", "192.168.1.1"}, []string{"172.16.0.1"}},
		{"[10.0.0.0/8, !10.1.0.0/16]", []string{"10.2.0.1"}, []string{"10.1.0.1", "11.0.0.1"}},
		{"[!10.1.0.0/16]", []string{"10.2.0.1", "8.8.8.8"}, []string{"10.1.0.1"}},
		{"[10.0.0.0/8,![10.1.0.0/16,!10.1.1.0/24]]", []string{"10.1.1.1", "10.2.0.1"}, []string{"10.1.2.1"}},
		{"$HOME_NET", []string{"10.0.0.1", "172.16.0.1", "192.168.0.1", "fd00::1"}, []string{"8.8.8.8", "2001:db8::1"}},
		{"!$HOME_NET", []string{"8.8.8.8"}, []string{"10.0.0.1", "fd00::1"}},
		{"[$HOME_NET,8.8.8.8]", []string{"8.8.8.8", "10.9.9.9"}, []string{"8.8.4.4"}},
		{"$WEB", []string{"10.1.3.1"}, []string{"10.1.2.1", "10.2.0.1"}},
		{"[$WEB,!10.1.3.0/24]", []string{"10.1.4.1"}, []string{"10.1.3.1", "10.1.2.1"}},
		{"$EXTERNAL_NET", []string{"10.0.0.1", "8.8.8.8"}, nil},
		{"::ffff:10.0.0.1", []string{"10.0.0.1"}, []string{"10.0.0.2"}},
	}
	for _, tt := range tests {
		r := newResolver(vars)
		s, err := r.addrSet(tt.spec)
		if err != nil {
			t.Errorf("%s: %v", tt.spec, err)
			continue
		}
		for _, a := range tt.in {
			if !s.Contains(netip.MustParseAddr(a)) {
				t.Errorf("%s = %+v: does not contain %s", tt.spec, s, a)
			}
		}
		for _, a := range tt.out {
			if s.Contains(netip.MustParseAddr(a)) {
				t.Errorf("%s = %+v: contains %s", tt.spec, s, a)
			}
		}
	}
	// The shorter form is chosen: "not HOME_NET" is written as its
	// exclusion.
	s, _ := newResolver(vars).addrSet("!$HOME_NET")
	if len(s.Include) != 0 || len(s.Exclude) != 4 {
		t.Errorf("!$HOME_NET = %+v, want 4 excluded prefixes", s)
	}
	s, _ = newResolver(vars).addrSet("[any]")
	if !s.Any {
		t.Errorf("[any] = %+v, want Any", s)
	}
}

func TestAddrSetErrors(t *testing.T) {
	tests := []struct{ spec, want string }{
		{"10.0.0.256", "bad address"},
		{"foo", "bad address"},
		{"[10.0.0.1", "no closing ]"},
		{"[10.0.0.1,]", "empty element"},
		{"$NOPE", "undefined variable $NOPE"},
		{"!any", "matches no address"},
		{"[10.0.0.0/8,!10.0.0.0/8]", "matches no address"},
		{"10.0.0.9-10.0.0.1", "bad address range"},
		{"10.0.0.0/33", "bad address"},
	}
	for _, tt := range tests {
		_, err := newResolver(nil).addrSet(tt.spec)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want %q", tt.spec, err, tt.want)
		}
	}
}

func TestAddrSetLarge(t *testing.T) {
	// Many prefixes: Contains bisects.
	var parts []string
	for i := 0; i < 40; i += 2 {
		parts = append(parts, netip.AddrFrom4([4]byte{10, byte(i), 0, 0}).String()+"/16")
	}
	s, err := newResolver(nil).addrSet("[" + strings.Join(parts, ",") + "]")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Include) != 20 {
		t.Fatalf("%d prefixes, want 20", len(s.Include))
	}
	for i := 0; i < 42; i++ {
		for _, host := range []byte{0, 255} {
			a := netip.AddrFrom4([4]byte{10, byte(i), host, host})
			if got, want := s.Contains(a), i%2 == 0 && i < 40; got != want {
				t.Errorf("Contains(%s) = %v, want %v", a, got, want)
			}
		}
	}
	if s.Contains(netip.MustParseAddr("9.255.255.255")) || s.Contains(netip.MustParseAddr("::1")) {
		t.Error("contains an address below or outside the family")
	}
}

func TestPortSet(t *testing.T) {
	tests := []struct {
		spec    string
		in, out []uint16
	}{
		{"any", []uint16{0, 80, 65535}, nil},
		{"80", []uint16{80}, []uint16{79, 81}},
		{"1024:", []uint16{1024, 65535}, []uint16{1023}},
		{":1023", []uint16{0, 1023}, []uint16{1024}},
		{"8000:8100", []uint16{8000, 8100}, []uint16{7999, 8101}},
		{"!80", []uint16{81, 0}, []uint16{80}},
		{"[80,443,8000:8080]", []uint16{80, 443, 8042}, []uint16{81, 8081}},
		{"[1:1000,!80]", []uint16{79, 81, 1000}, []uint16{80, 1001, 0}},
		{"[!80,!443]", []uint16{1, 8080}, []uint16{80, 443}},
		{"$HTTP_PORTS", []uint16{80, 8080, 55555}, []uint16{443, 22}},
		{"$SHELLCODE_PORTS", []uint16{22, 443}, []uint16{80}},
		{"$FILE_DATA_PORTS", []uint16{80, 110, 143}, []uint16{25}},
		{"[$HTTP_PORTS,!8080]", []uint16{80}, []uint16{8080}},
	}
	for _, tt := range tests {
		s, err := newResolver(nil).portSet(tt.spec)
		if err != nil {
			t.Errorf("%s: %v", tt.spec, err)
			continue
		}
		for _, p := range tt.in {
			if !s.Contains(p) {
				t.Errorf("%s = %+v: does not contain %d", tt.spec, s, p)
			}
		}
		for _, p := range tt.out {
			if s.Contains(p) {
				t.Errorf("%s = %+v: contains %d", tt.spec, s, p)
			}
		}
	}
	for _, tt := range []struct{ spec, want string }{
		{"65536", "bad port"},
		{"http", "bad port"},
		{"90:80", "bad port range"},
		{":", "bad port range"},
		{"!any", "matches no port"},
		{"[80", "no closing ]"},
		{"$HOME_NET", "variable $HOME_NET"},
	} {
		_, err := newResolver(nil).portSet(tt.spec)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want %q", tt.spec, err, tt.want)
		}
	}
}

func TestContainsNoAllocs(t *testing.T) {
	r := newResolver(nil)
	a, _ := r.addrSet("[$HOME_NET,!10.1.0.0/16,1.0.0.0/8,2.0.0.0/8,3.0.0.0/8,4.0.0.0/8,5.0.0.0/8,6.0.0.0/8,7.0.0.0/8]")
	p, _ := r.portSet("$HTTP_PORTS")
	ip := netip.MustParseAddr("10.2.3.4")
	n := testing.AllocsPerRun(1000, func() {
		if !a.Contains(ip) || !p.Contains(8080) {
			t.Fatal("not contained")
		}
	})
	if n != 0 {
		t.Errorf("Contains allocates %v times", n)
	}
}
