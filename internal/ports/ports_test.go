package ports

import (
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in    string
		want  Spec
		canon string
	}{
		{"any", Spec{0, 0, 65535, -1, -1}, "any"},
		{"ANY", Spec{0, 0, 65535, -1, -1}, "any"},
		{"tcp", Spec{TCP, 0, 65535, -1, -1}, "tcp"},
		{"tcp/443", Spec{TCP, 443, 443, -1, -1}, "tcp/443"},
		{"TCP/443", Spec{TCP, 443, 443, -1, -1}, "tcp/443"},
		{" udp/53 ", Spec{UDP, 53, 53, -1, -1}, "udp/53"},
		{"tcp/8000-8100", Spec{TCP, 8000, 8100, -1, -1}, "tcp/8000-8100"},
		{"tcp/0-65535", Spec{TCP, 0, 65535, -1, -1}, "tcp"},
		{"tcp/0", Spec{TCP, 0, 0, -1, -1}, "tcp/0"},
		{"udp/07", Spec{UDP, 7, 7, -1, -1}, "udp/7"},
		{"sctp/3868", Spec{SCTP, 3868, 3868, -1, -1}, "sctp/3868"},
		{"icmp", Spec{ICMP, 0, 65535, -1, -1}, "icmp"},
		{"icmp/8", Spec{ICMP, 0, 65535, 8, -1}, "icmp/8"},
		{"icmp/3/4", Spec{ICMP, 0, 65535, 3, 4}, "icmp/3/4"},
		{"icmpv6/128", Spec{ICMPv6, 0, 65535, 128, -1}, "icmpv6/128"},
		{"ICMPv6", Spec{ICMPv6, 0, 65535, -1, -1}, "icmpv6"},
		{"proto/47", Spec{47, 0, 65535, -1, -1}, "proto/47"},
		{"proto/6", Spec{TCP, 0, 65535, -1, -1}, "tcp"},
		{"proto/17/53", Spec{UDP, 53, 53, -1, -1}, "udp/53"},
		{"proto/1/0", Spec{ICMP, 0, 65535, 0, -1}, "icmp/0"},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("Parse(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
		if s := got.String(); s != tt.canon {
			t.Errorf("Parse(%q).String() = %q, want %q", tt.in, s, tt.canon)
		}
		if again, err := Parse(got.String()); err != nil || again != got {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", got.String(), again, err, got)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `empty port spec`},
		{"tpc/443", `unknown protocol "tpc"`},
		{"TPC", `unknown protocol "TPC"`},
		{"443", `unknown protocol "443"`},
		{"tcp/9000-8000", `bad port range "9000-8000": low port above high port`},
		{"tcp/70000", `port 70000 out of range`},
		{"udp/1-99999999999999999999999", `port 99999999999999999999999 out of range`},
		{"tcp/", `bad port spec "tcp/": missing port number`},
		{"tcp/80-", `bad port spec "tcp/80-": missing port number`},
		{"tcp/http", `bad port "http" in "tcp/http": want a number 0-65535`},
		{"tcp/+80", `bad port "+80" in "tcp/+80": want a number 0-65535`},
		{"tcp/80/1", `bad port spec "tcp/80/1": tcp takes one port or range`},
		{"icmp/300", `bad ICMP type "300" in "icmp/300": want 0-255`},
		{"icmp/3/x", `bad ICMP code "x" in "icmp/3/x": want 0-255`},
		{"icmp/", `bad ICMP type "" in "icmp/": want 0-255`},
		{"icmp/3/4/5", `bad ICMP code "4/5" in "icmp/3/4/5": want 0-255`},
		{"any/80", `bad port spec "any/80": "any" takes no port`},
		{"proto", `bad port spec "proto": expected a protocol number after "proto/"`},
		{"proto/256", `bad protocol number "256" in "proto/256": want 1-255`},
		{"proto/0", `bad port spec "proto/0": protocol 0 is reserved; write "any" for every protocol`},
		{"proto/47/1", `bad port spec "proto/47/1": protocol 47 has no ports`},
	}
	for _, tt := range tests {
		got, err := Parse(tt.in)
		if err == nil {
			t.Errorf("Parse(%q) = %+v, want error %s", tt.in, got, tt.want)
			continue
		}
		if err.Error() != tt.want {
			t.Errorf("Parse(%q) error:\n got %s\nwant %s", tt.in, err, tt.want)
		}
	}
}

func TestMatches(t *testing.T) {
	type pkt struct {
		proto     uint8
		port      uint16
		typ, code int16
		want      bool
	}
	tests := []struct {
		spec string
		pkts []pkt
	}{
		{"any", []pkt{{TCP, 1, -1, -1, true}, {ICMP, 0, 8, 0, true}, {47, 0, -1, -1, true}}},
		{"tcp", []pkt{{TCP, 0, -1, -1, true}, {TCP, 65535, -1, -1, true}, {UDP, 80, -1, -1, false}}},
		{"tcp/443", []pkt{{TCP, 443, -1, -1, true}, {TCP, 444, -1, -1, false}, {UDP, 443, -1, -1, false}}},
		{"udp/8000-8100", []pkt{{UDP, 7999, -1, -1, false}, {UDP, 8000, -1, -1, true}, {UDP, 8100, -1, -1, true}, {UDP, 8101, -1, -1, false}}},
		{"icmp", []pkt{{ICMP, 0, 8, 0, true}, {ICMPv6, 0, 128, 0, false}}},
		{"icmp/8", []pkt{{ICMP, 1234, 8, 0, true}, {ICMP, 0, 0, 0, false}}},
		{"icmp/3/4", []pkt{{ICMP, 0, 3, 4, true}, {ICMP, 0, 3, 1, false}, {ICMP, 0, 4, 4, false}}},
		{"icmpv6/128", []pkt{{ICMPv6, 0, 128, 0, true}, {ICMP, 0, 128, 0, false}}},
		{"proto/47", []pkt{{47, 0, -1, -1, true}, {50, 0, -1, -1, false}}},
	}
	for _, tt := range tests {
		s, err := Parse(tt.spec)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range tt.pkts {
			if got := s.Matches(p.proto, p.port, p.typ, p.code); got != p.want {
				t.Errorf("%s.Matches(%d, %d, %d, %d) = %v, want %v", tt.spec, p.proto, p.port, p.typ, p.code, got, p.want)
			}
		}
	}
}

func TestProtoName(t *testing.T) {
	for p, want := range map[uint8]string{0: "any", TCP: "tcp", UDP: "udp", SCTP: "sctp", ICMP: "icmp", ICMPv6: "icmpv6", 47: "proto/47"} {
		if got := ProtoName(p); got != want {
			t.Errorf("ProtoName(%d) = %q, want %q", p, got, want)
		}
	}
}

func TestMatchesNoAllocs(t *testing.T) {
	specs := []Spec{}
	for _, s := range []string{"tcp/443", "udp/8000-8100", "icmp/3/4", "any"} {
		sp, err := Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		specs = append(specs, sp)
	}
	var sink bool
	n := testing.AllocsPerRun(1000, func() {
		for _, s := range specs {
			sink = s.Matches(TCP, 443, -1, -1) != sink
			sink = s.Matches(ICMP, 0, 3, 4) != sink
		}
	})
	if n != 0 {
		t.Errorf("Matches allocates %v times per run, want 0", n)
	}
}

func BenchmarkMatches(b *testing.B) {
	s, _ := Parse("tcp/8000-8100")
	for b.Loop() {
		s.Matches(TCP, 8080, -1, -1)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"tcp/443", "udp/53", "tcp/8000-8100", "tcp", "sctp/1-2", "icmp", "icmp/8", "icmp/3/4",
		"icmpv6/128", "any", "proto/47", "proto/6/80", "tcp/9000-8000", "tcp/70000", "tpc", "icmp//", "/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := Parse(in)
		if err != nil {
			return
		}
		again, err := Parse(s.String())
		if err != nil {
			t.Fatalf("Parse(%q) = %+v, whose String %q does not parse: %v", in, s, s.String(), err)
		}
		if again != s {
			t.Fatalf("Parse(%q) = %+v, but Parse(%q) = %+v", in, s, s.String(), again)
		}
		if s.Lo > s.Hi {
			t.Fatalf("Parse(%q): Lo > Hi", in)
		}
	})
}
