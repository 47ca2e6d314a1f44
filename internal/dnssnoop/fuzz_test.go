package dnssnoop

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

func parseSeeds(f *testing.F) {
	f.Add(response(f, 0, "www.example.test.",
		cname("www.example.test.", 30, "edge.cdn.test."),
		a("edge.cdn.test.", 2, "192.0.2.10"),
		aaaa("edge.cdn.test.", 2, "2001:db8::10"),
		txt("edge.cdn.test.", 2, "hello")))
	f.Add(response(f, dnsmessage.RCodeNameError, "nx.example.test."))
	f.Add(cat(hdr(1, 1), question, rr([]byte{0xc0, 12}, TypeCNAME, []byte{0xc0, 12})))
	f.Add(cat(hdr(1, 0), []byte{0xc0, 12, 0, 1, 0, 1}))
	f.Add(cat(hdr(1, 1), question, rr(cat([]byte{1, 'a'}, []byte{0xc0, 24}), TypeA, []byte{1, 2, 3, 4})))
	f.Add(cnameLongerThanRData())
}

// FuzzParse: no input panics, a parsed answer is well formed, and whatever
// we read, x/net's parser reads the same (it is more lenient: it follows
// forward pointers, reads names with any bytes and does not hold records to
// their rdata length; but it follows at most 10 pointers per name).
func FuzzParse(f *testing.F) {
	parseSeeds(f)
	f.Fuzz(func(t *testing.T, msg []byte) {
		var ans Answer
		err := ans.Parse(msg)
		if err == nil {
			for i, r := range ans.Records {
				switch {
				case r.Type == TypeA && !r.Addr.Is4(), r.Type == TypeAAAA && !r.Addr.Is6():
					t.Fatalf("record %d: type %d with address %v", i, r.Type, r.Addr)
				case r.Type == TypeCNAME && r.Target.n == 0 && r.Target.String() != "":
					t.Fatalf("record %d: bad target", i)
				}
			}
		}
		if err != nil {
			return
		}
		want, rerr := referenceParse(msg)
		if rerr != nil {
			if strings.Contains(rerr.Error(), "too many pointers") {
				return // x/net follows at most 10
			}
			if strings.Contains(rerr.Error(), "invalid dns name") && ans.p.Skipped() > 0 {
				return // we do not look at the names of records we skip
			}
			t.Fatalf("we parse it, x/net fails: %v", rerr)
		}
		if len(want) > MaxRecords {
			want = want[:MaxRecords]
		}
		if len(want) != len(ans.Records) {
			t.Fatalf("%d records, x/net %d", len(ans.Records), len(want))
		}
		for i, r := range ans.Records {
			if w := want[i]; w.typ != r.Type || w.name != r.Name.String() || w.addr != r.Addr || w.target != r.Target.String() {
				t.Fatalf("record %d: %s %d %v %s; x/net %+v", i, r.Name.String(), r.Type, r.Addr, r.Target.String(), w)
			}
		}
	})
}

type refRecord struct {
	name   string
	typ    uint16
	addr   netip.Addr
	target string
}

func canon(n dnsmessage.Name) string {
	s := n.String()
	if len(s) > 0 && s[len(s)-1] == '.' {
		s = s[:len(s)-1]
	}
	var nm Name
	nm.Set(s)
	return nm.String()
}

// referenceParse reads a response's question and answers with x/net's
// parser.
func referenceParse(msg []byte) ([]refRecord, error) {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil {
		return nil, err
	}
	if !h.Response {
		return nil, errors.New("not a response")
	}
	qs, err := p.AllQuestions()
	if err != nil {
		return nil, err
	}
	if len(qs) != 1 {
		return nil, fmt.Errorf("%d questions", len(qs))
	}
	var out []refRecord
	for {
		rh, err := p.AnswerHeader()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		r := refRecord{name: canon(rh.Name), typ: uint16(rh.Type)}
		if rh.Class != dnsmessage.ClassINET {
			if err := p.SkipAnswer(); err != nil {
				return nil, err
			}
			continue
		}
		switch rh.Type {
		case dnsmessage.TypeA:
			x, err := p.AResource()
			if err != nil {
				return nil, err
			}
			r.addr = netip.AddrFrom4(x.A)
		case dnsmessage.TypeAAAA:
			x, err := p.AAAAResource()
			if err != nil {
				return nil, err
			}
			r.addr = netip.AddrFrom16(x.AAAA)
		case dnsmessage.TypeCNAME:
			x, err := p.CNAMEResource()
			if err != nil {
				return nil, err
			}
			r.target = canon(x.CNAME)
		default:
			if err := p.SkipAnswer(); err != nil {
				return nil, err
			}
			continue
		}
		out = append(out, r)
	}
}

// FuzzHandle feeds arbitrary packets (UDP and TCP, as NFLOG hands them
// over) to a snooper: nothing panics and the caps hold.
func FuzzHandle(f *testing.F) {
	srv := netip.MustParseAddrPort("192.0.2.53:53")
	cli := netip.MustParseAddrPort("10.1.0.1:40000")
	msg := response(f, 0, "www.example.test.", cname("www.example.test.", 30, "edge.cdn.test."), a("edge.cdn.test.", 2, "192.0.2.10"))
	f.Add(udpPacket(srv, cli, msg))
	f.Add(tcpPacket(srv, cli, 1000, tcpSYN|tcpACK, nil))
	f.Add(tcpPacket(srv, cli, 1001, tcpACK, tcpMessage(msg)))
	f.Add(udpPacket(netip.MustParseAddrPort("[2001:db8::53]:53"), netip.MustParseAddrPort("[2001:db8::1]:40000"), msg))
	cache, err := NewCache(CacheConfig{MaxEntries: 16, MaxNamesPerIP: 2, MaxIPsPerName: 2})
	if err != nil {
		f.Fatal(err)
	}
	s, err := NewSnooper(SnooperConfig{MaxTCPFlows: 2}, cache)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		s.Handle(pkt, time.Unix(1000, 0))
		if st := cache.Stats(); st.Entries > 16 {
			t.Fatalf("cache holds %d entries, cap 16", st.Entries)
		}
		if s.tcp.Flows() > 2 {
			t.Fatalf("%d TCP flows, cap 2", s.tcp.Flows())
		}
	})
}
