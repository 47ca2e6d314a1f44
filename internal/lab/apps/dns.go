package apps

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// DNSConfig is the lab's authoritative DNS server ("dns"), on UDP and TCP.
// It answers A, AAAA, CNAME (following chains across its zones), TXT, SOA
// and NS for its zones, NXDOMAIN for names that do not exist in them, and
// REFUSED for everything else: it never recurses, so no query leaves the lab.
type DNSConfig struct {
	Env `yaml:"-"`
	// Port to listen on, UDP and TCP; 0 picks a free one (the same for
	// both). Default 53.
	Port  int    `json:"port" yaml:"port"`
	Zones []Zone `json:"zones" yaml:"zones"`
	// Moves are names whose address changes on a timer, so that FQDN rules
	// can be seen following a name.
	Moves []Move `json:"moves,omitempty" yaml:"moves"`
}

// Zone is one zone the server is authoritative for.
type Zone struct {
	Name string `json:"name" yaml:"name"` // e.g. "lab.test"
	// TTL is the default TTL of the zone's records, in seconds; default 30.
	TTL     int      `json:"ttl,omitempty" yaml:"ttl"`
	Records []Record `json:"records,omitempty" yaml:"records"`
}

// Record holds the data of one name. Name is relative to the zone ("www"),
// "@" for the zone's apex, or absolute with a final dot.
type Record struct {
	Name  string   `json:"name" yaml:"name"`
	TTL   int      `json:"ttl,omitempty" yaml:"ttl"`
	A     []string `json:"a,omitempty" yaml:"a"`
	AAAA  []string `json:"aaaa,omitempty" yaml:"aaaa"`
	CNAME string   `json:"cname,omitempty" yaml:"cname"`
	TXT   []string `json:"txt,omitempty" yaml:"txt"`
	// Workload stands for the addresses of a workload of the scenario; the
	// scenario replaces it by A and AAAA before the server sees it.
	Workload string `json:"workload,omitempty" yaml:"workload"`
}

// Move is a name whose A (and AAAA) answer rotates through a list every
// Every. Name is absolute ("moving.example.test") and inside a zone.
type Move struct {
	Name  string   `json:"name" yaml:"name"`
	TTL   int      `json:"ttl,omitempty" yaml:"ttl"`
	Every Duration `json:"every" yaml:"every"`
	// Targets are addresses, or workload names that the scenario replaces
	// by their IPv4 address.
	Targets []string `json:"targets" yaml:"targets"`
}

// SetDefaults fills in port 53 and TTLs.
func (c *DNSConfig) SetDefaults() {
	if c.Port == 0 {
		c.Port = 53
	}
	for i := range c.Zones {
		if c.Zones[i].TTL == 0 {
			c.Zones[i].TTL = 30
		}
	}
	for i := range c.Moves {
		if c.Moves[i].TTL == 0 {
			c.Moves[i].TTL = 5
		}
		if c.Moves[i].Every == 0 {
			c.Moves[i].Every = Duration(time.Minute)
		}
	}
}

// Refs returns the move targets (workload names or addresses).
func (c *DNSConfig) Refs() []*string {
	var refs []*string
	for i := range c.Moves {
		for j := range c.Moves[i].Targets {
			refs = append(refs, &c.Moves[i].Targets[j])
		}
	}
	return refs
}

// Names returns every name the server has data for (absolute, lower case,
// without the final dot), zone apexes included.
func (c *DNSConfig) Names() []string {
	var out []string
	for _, z := range c.Zones {
		zn := canonical(z.Name)
		out = append(out, zn)
		for _, r := range z.Records {
			out = append(out, recordName(r.Name, zn))
		}
	}
	for _, m := range c.Moves {
		out = append(out, canonical(m.Name))
	}
	return out
}

// canonical lower-cases a name and drops its final dot.
func canonical(name string) string { return strings.TrimSuffix(strings.ToLower(name), ".") }

// recordName makes a record's name absolute in zone.
func recordName(name, zone string) string {
	switch {
	case name == "@" || name == "":
		return zone
	case strings.HasSuffix(name, "."):
		return canonical(name)
	}
	return canonical(name) + "." + zone
}

func validName(n string) bool {
	n = strings.TrimSuffix(n, ".")
	if n == "" || len(n) > 253 {
		return false
	}
	for l := range strings.SplitSeq(n, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '*') {
				return false
			}
		}
	}
	return true
}

// Validate checks the configuration.
func (c DNSConfig) Validate() error {
	errs := []error{checkPort("port", c.Port)}
	if len(c.Zones) == 0 {
		errs = append(errs, fieldErr("zones", "at least one zone"))
	}
	zones := map[string]bool{}
	names := map[string]string{}
	for i, z := range c.Zones {
		f := fmt.Sprintf("zones[%d]", i)
		zn := canonical(z.Name)
		if !validName(zn) {
			errs = append(errs, fieldErr(f+".name", "%q is not a domain name", z.Name))
			continue
		}
		if zones[zn] {
			errs = append(errs, fieldErr(f+".name", "zone %q twice", zn))
		}
		zones[zn] = true
		if z.TTL < 0 || z.TTL > 86400 {
			errs = append(errs, fieldErr(f+".ttl", "%d: want 0-86400 seconds", z.TTL))
		}
		for j, r := range z.Records {
			rf := fmt.Sprintf("%s.records[%d]", f, j)
			errs = append(errs, r.validate(rf, zn, names))
		}
	}
	for i, m := range c.Moves {
		f := fmt.Sprintf("moves[%d]", i)
		n := canonical(m.Name)
		if !validName(n) || !inZones(n, zones) {
			errs = append(errs, fieldErr(f+".name", "%q is not a name in one of the zones", m.Name))
		} else if prev, dup := names[n]; dup {
			errs = append(errs, fieldErr(f+".name", "%q already has records at %s", m.Name, prev))
		}
		if m.Every.D() < time.Second {
			errs = append(errs, fieldErr(f+".every", "%s: want at least 1s", m.Every))
		}
		if m.TTL < 0 || m.TTL > 86400 {
			errs = append(errs, fieldErr(f+".ttl", "%d: want 0-86400 seconds", m.TTL))
		}
		if len(m.Targets) < 2 {
			errs = append(errs, fieldErr(f+".targets", "a name that moves needs at least two targets"))
		}
		for j, t := range m.Targets {
			if _, err := netip.ParseAddr(t); err != nil {
				errs = append(errs, fieldErr(fmt.Sprintf("%s.targets[%d]", f, j), "%q is not an IP address", t))
			}
		}
	}
	return joinNonNil(errs)
}

func inZones(n string, zones map[string]bool) bool {
	for z := range zones {
		if n == z || strings.HasSuffix(n, "."+z) {
			return true
		}
	}
	return false
}

func (r Record) validate(f, zone string, names map[string]string) error {
	var errs []error
	n := recordName(r.Name, zone)
	if !validName(n) || !(n == zone || strings.HasSuffix(n, "."+zone)) {
		return fieldErr(f+".name", "%q is not a name in zone %s", r.Name, zone)
	}
	if prev, dup := names[n]; dup {
		errs = append(errs, fieldErr(f+".name", "%s already defined at %s; put all its data in one record", n, prev))
	}
	names[n] = f
	if r.Workload != "" {
		errs = append(errs, fieldErr(f+".workload", "workload %q was not replaced by its addresses (only a scenario can use workload here)", r.Workload))
	}
	if r.TTL < 0 || r.TTL > 86400 {
		errs = append(errs, fieldErr(f+".ttl", "%d: want 0-86400 seconds", r.TTL))
	}
	for i, a := range r.A {
		if ip, err := netip.ParseAddr(a); err != nil || !ip.Is4() {
			errs = append(errs, fieldErr(fmt.Sprintf("%s.a[%d]", f, i), "%q is not an IPv4 address", a))
		}
	}
	for i, a := range r.AAAA {
		if ip, err := netip.ParseAddr(a); err != nil || !ip.Is6() || ip.Is4In6() {
			errs = append(errs, fieldErr(fmt.Sprintf("%s.aaaa[%d]", f, i), "%q is not an IPv6 address", a))
		}
	}
	for i, t := range r.TXT {
		if len(t) > 255 {
			errs = append(errs, fieldErr(fmt.Sprintf("%s.txt[%d]", f, i), "longer than 255 bytes"))
		}
	}
	if r.CNAME != "" {
		if !validName(r.CNAME) {
			errs = append(errs, fieldErr(f+".cname", "%q is not a domain name", r.CNAME))
		}
		if len(r.A)+len(r.AAAA)+len(r.TXT) > 0 {
			errs = append(errs, fieldErr(f+".cname", "a name with a CNAME can have no other data"))
		}
		if n == zone {
			errs = append(errs, fieldErr(f+".cname", "the zone apex cannot be a CNAME"))
		}
	} else if len(r.A)+len(r.AAAA)+len(r.TXT) == 0 {
		errs = append(errs, fieldErr(f, "%s has no data (a, aaaa, cname, txt or workload)", n))
	}
	return joinNonNil(errs)
}

// dnsData is one name's data in the server.
type dnsData struct {
	ttl   uint32
	a     []netip.Addr
	aaaa  []netip.Addr
	cname string // canonical
	txt   []string
	move  *mover
}

type mover struct {
	targets []netip.Addr
	every   time.Duration
	start   time.Time
}

func (m *mover) current(now time.Time) netip.Addr {
	i := int(now.Sub(m.start)/m.every) % len(m.targets)
	return m.targets[i]
}

type dnsServer struct {
	zones  []string            // canonical, longest first
	ttl    map[string]uint32   // zone -> default TTL
	data   map[string]*dnsData // canonical name -> data
	exists map[string]bool     // names with data and their ancestors inside a zone
	log    *slog.Logger
}

func newDNSServer(cfg *DNSConfig, log *slog.Logger) *dnsServer {
	s := &dnsServer{ttl: map[string]uint32{}, data: map[string]*dnsData{}, exists: map[string]bool{}, log: log}
	for _, z := range cfg.Zones {
		zn := canonical(z.Name)
		s.zones = append(s.zones, zn)
		ttl := uint32(z.TTL)
		if z.TTL == 0 {
			ttl = 30
		}
		s.ttl[zn] = ttl
		s.exists[zn] = true
		for _, r := range z.Records {
			n := recordName(r.Name, zn)
			d := &dnsData{ttl: ttl, cname: canonical(r.CNAME), txt: r.TXT}
			if r.TTL > 0 {
				d.ttl = uint32(r.TTL)
			}
			for _, a := range r.A {
				d.a = append(d.a, netip.MustParseAddr(a))
			}
			for _, a := range r.AAAA {
				d.aaaa = append(d.aaaa, netip.MustParseAddr(a))
			}
			s.data[n] = d
			s.markExists(n, zn)
		}
	}
	start := time.Now()
	for _, m := range cfg.Moves {
		n := canonical(m.Name)
		mv := &mover{every: m.Every.D(), start: start}
		for _, t := range m.Targets {
			mv.targets = append(mv.targets, netip.MustParseAddr(t))
		}
		s.data[n] = &dnsData{ttl: uint32(m.TTL), move: mv}
		if z := s.zoneOf(n); z != "" {
			s.markExists(n, z)
		}
	}
	// Longest zone first, so that a sub-zone wins over its parent.
	for i := range s.zones {
		for j := i + 1; j < len(s.zones); j++ {
			if len(s.zones[j]) > len(s.zones[i]) {
				s.zones[i], s.zones[j] = s.zones[j], s.zones[i]
			}
		}
	}
	return s
}

func (s *dnsServer) markExists(n, zone string) {
	for {
		s.exists[n] = true
		if n == zone {
			return
		}
		i := strings.IndexByte(n, '.')
		if i < 0 {
			return
		}
		n = n[i+1:]
	}
}

func (s *dnsServer) zoneOf(n string) string {
	for _, z := range s.zones {
		if n == z || strings.HasSuffix(n, "."+z) {
			return z
		}
	}
	return ""
}

// RunDNS serves DNS over UDP and TCP until ctx is cancelled.
func RunDNS(ctx context.Context, cfg DNSConfig) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	log := cfg.log().With("server", "dns")
	s := newDNSServer(&cfg, log)
	ln, pc, err := listenBoth(ctx, &cfg.Env, cfg.Port)
	if err != nil {
		return fmt.Errorf("dns: %w", err)
	}
	cfg.ready("tcp", ln.Addr())
	cfg.ready("udp", pc.LocalAddr())
	log.Info("listening", "tcp", ln.Addr().String(), "udp", pc.LocalAddr().String(), "zones", strings.Join(s.zones, ","))
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { s.logMoves(ctx, &cfg) })
	wg.Go(func() { s.serveUDP(ctx, pc) })
	err = serveConns(ctx, ln, s.serveTCP)
	cancel() // TCP failed or ctx ended: stop UDP and the move log too
	pc.Close()
	wg.Wait()
	return err
}

// listenBoth opens TCP and UDP on the same port (a free one when port is 0).
func listenBoth(ctx context.Context, env *Env, port int) (net.Listener, net.PacketConn, error) {
	var lc net.ListenConfig
	for try := 0; ; try++ {
		ln, err := lc.Listen(ctx, "tcp", env.listenAddr(port))
		if err != nil {
			return nil, nil, err
		}
		p := ln.Addr().(*net.TCPAddr).Port
		pc, err := lc.ListenPacket(ctx, "udp", env.listenAddr(p))
		if err == nil {
			return ln, pc, nil
		}
		ln.Close()
		if port != 0 || try > 10 {
			return nil, nil, err
		}
	}
}

func (s *dnsServer) logMoves(ctx context.Context, cfg *DNSConfig) {
	if len(cfg.Moves) == 0 {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := map[string]netip.Addr{}
	for {
		now := time.Now()
		for _, m := range cfg.Moves {
			n := canonical(m.Name)
			cur := s.data[n].move.current(now)
			if last[n] != cur {
				s.log.Info("name moved", "name", n, "to", cur.String(), "ttl", m.TTL)
				last[n] = cur
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *dnsServer) serveUDP(ctx context.Context, pc net.PacketConn) {
	context.AfterFunc(ctx, func() { pc.Close() })
	buf := make([]byte, 65535)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		resp := s.answer(buf[:n], from, "udp")
		if resp != nil {
			pc.WriteTo(resp, from)
		}
	}
}

func (s *dnsServer) serveTCP(ctx context.Context, c net.Conn) {
	for {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		var l [2]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return
		}
		msg := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(c, msg); err != nil {
			return
		}
		resp := s.answer(msg, c.RemoteAddr(), "tcp")
		if resp == nil {
			return
		}
		out := binary.BigEndian.AppendUint16(nil, uint16(len(resp)))
		if _, err := c.Write(append(out, resp...)); err != nil {
			return
		}
	}
}

// answer builds the response to one query; nil drops it (not a query).
func (s *dnsServer) answer(msg []byte, from net.Addr, transport string) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil || h.Response {
		return nil
	}
	q, qerr := p.Question()
	p.SkipAllQuestions()
	p.SkipAllAnswers()
	p.SkipAllAuthorities()
	udpSize, edns := 512, false
	for {
		rh, err := p.AdditionalHeader()
		if err != nil {
			break
		}
		if rh.Type == dnsmessage.TypeOPT {
			edns = true
			udpSize = max(512, min(int(rh.Class), 4096))
		}
		p.SkipAdditional()
	}
	rh := dnsmessage.Header{ID: h.ID, Response: true, OpCode: h.OpCode, RecursionDesired: h.RecursionDesired}
	r := reply{hdr: rh}
	switch {
	case h.OpCode != 0:
		r.hdr.RCode = dnsmessage.RCodeNotImplemented
	case qerr != nil:
		r.hdr.RCode = dnsmessage.RCodeFormatError
	default:
		r.q = &q
		s.resolve(&r, q)
	}
	limit := 65535
	if transport == "udp" {
		limit = udpSize
	}
	out, err := r.build(edns, limit)
	if err != nil {
		s.log.Warn("build answer", "err", err)
		return nil
	}
	if r.q != nil {
		var vals []string
		for _, a := range r.answers {
			vals = append(vals, a.String())
		}
		s.log.Info("query", "name", q.Name.String(), "type", typeName(q.Type), "transport", transport,
			"client", from.String(), "rcode", rcodeName(r.hdr.RCode), "answers", strings.Join(vals, " "))
	}
	return out
}

// rr is one answer record.
type rr struct {
	name  string // canonical
	typ   dnsmessage.Type
	ttl   uint32
	addr  netip.Addr
	cname string
	txt   []string
}

func (r rr) String() string {
	switch r.typ {
	case dnsmessage.TypeCNAME:
		return fmt.Sprintf("%s CNAME %s", r.name, r.cname)
	case dnsmessage.TypeTXT:
		return fmt.Sprintf("%s TXT %q", r.name, strings.Join(r.txt, ""))
	}
	return fmt.Sprintf("%s %s %s", r.name, typeName(r.typ), r.addr)
}

type reply struct {
	hdr     dnsmessage.Header
	q       *dnsmessage.Question
	answers []rr
	soa     string // zone whose SOA goes in the authority section
	apex    string // zone whose SOA/NS is the answer
}

func (s *dnsServer) resolve(r *reply, q dnsmessage.Question) {
	name := canonical(q.Name.String())
	if q.Class != dnsmessage.ClassINET && q.Class != dnsmessage.ClassANY {
		r.hdr.RCode = dnsmessage.RCodeRefused
		return
	}
	if s.zoneOf(name) == "" {
		r.hdr.RCode = dnsmessage.RCodeRefused
		return
	}
	r.hdr.Authoritative = true
	now := time.Now()
	for hop := 0; hop < 8; hop++ {
		zone := s.zoneOf(name)
		if zone == "" {
			return // a CNAME out of our zones: the client follows it
		}
		d := s.data[name]
		if d != nil && d.cname != "" && q.Type != dnsmessage.TypeCNAME {
			r.answers = append(r.answers, rr{name: name, typ: dnsmessage.TypeCNAME, ttl: d.ttl, cname: d.cname})
			name = d.cname
			continue
		}
		if !s.exists[name] {
			// The RCODE speaks of the last name of the chain (RFC 6604).
			r.hdr.RCode = dnsmessage.RCodeNameError
			r.soa = zone
			return
		}
		n := len(r.answers)
		if name == zone && (q.Type == dnsmessage.TypeSOA || q.Type == dnsmessage.TypeNS || q.Type == dnsmessage.TypeALL) {
			r.apex = zone
		}
		if d != nil {
			want := func(t dnsmessage.Type) bool { return q.Type == t || q.Type == dnsmessage.TypeALL }
			a, aaaa := d.a, d.aaaa
			if d.move != nil {
				cur := d.move.current(now)
				a, aaaa = nil, nil
				if cur.Is4() {
					a = []netip.Addr{cur}
				} else {
					aaaa = []netip.Addr{cur}
				}
			}
			if want(dnsmessage.TypeA) {
				for _, x := range a {
					r.answers = append(r.answers, rr{name: name, typ: dnsmessage.TypeA, ttl: d.ttl, addr: x})
				}
			}
			if want(dnsmessage.TypeAAAA) {
				for _, x := range aaaa {
					r.answers = append(r.answers, rr{name: name, typ: dnsmessage.TypeAAAA, ttl: d.ttl, addr: x})
				}
			}
			if want(dnsmessage.TypeTXT) && len(d.txt) > 0 {
				r.answers = append(r.answers, rr{name: name, typ: dnsmessage.TypeTXT, ttl: d.ttl, txt: d.txt})
			}
			if q.Type == dnsmessage.TypeCNAME && d.cname != "" {
				r.answers = append(r.answers, rr{name: name, typ: dnsmessage.TypeCNAME, ttl: d.ttl, cname: d.cname})
			}
		}
		if len(r.answers) == n && r.apex == "" {
			r.soa = zone // NODATA
		}
		return
	}
}

func mustName(n string) dnsmessage.Name {
	if !strings.HasSuffix(n, ".") {
		n += "."
	}
	return dnsmessage.MustNewName(n)
}

func (r *reply) build(edns bool, limit int) ([]byte, error) {
	out, err := r.buildOnce(edns, false)
	if err != nil || len(out) <= limit {
		return out, err
	}
	return r.buildOnce(edns, true)
}

func (r *reply) buildOnce(edns, truncate bool) ([]byte, error) {
	hdr := r.hdr
	hdr.Truncated = truncate
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), hdr)
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	if r.q != nil {
		if err := b.Question(*r.q); err != nil {
			return nil, err
		}
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	if !truncate {
		if r.apex != "" {
			if r.q.Type != dnsmessage.TypeNS {
				if err := soaRR(&b, r.apex); err != nil {
					return nil, err
				}
			}
			if r.q.Type != dnsmessage.TypeSOA {
				err := b.NSResource(dnsmessage.ResourceHeader{Name: mustName(r.apex), Class: dnsmessage.ClassINET, TTL: 3600},
					dnsmessage.NSResource{NS: mustName("ns1." + r.apex)})
				if err != nil {
					return nil, err
				}
			}
		}
		for _, a := range r.answers {
			h := dnsmessage.ResourceHeader{Name: mustName(a.name), Class: dnsmessage.ClassINET, TTL: a.ttl}
			var err error
			switch a.typ {
			case dnsmessage.TypeA:
				err = b.AResource(h, dnsmessage.AResource{A: a.addr.As4()})
			case dnsmessage.TypeAAAA:
				err = b.AAAAResource(h, dnsmessage.AAAAResource{AAAA: a.addr.As16()})
			case dnsmessage.TypeCNAME:
				err = b.CNAMEResource(h, dnsmessage.CNAMEResource{CNAME: mustName(a.cname)})
			case dnsmessage.TypeTXT:
				err = b.TXTResource(h, dnsmessage.TXTResource{TXT: a.txt})
			}
			if err != nil {
				return nil, err
			}
		}
		if err := b.StartAuthorities(); err != nil {
			return nil, err
		}
		if r.soa != "" {
			if err := soaRR(&b, r.soa); err != nil {
				return nil, err
			}
		}
	}
	if err := b.StartAdditionals(); err != nil {
		return nil, err
	}
	if edns {
		var h dnsmessage.ResourceHeader
		if err := h.SetEDNS0(1232, dnsmessage.RCodeSuccess, false); err != nil {
			return nil, err
		}
		if err := b.OPTResource(h, dnsmessage.OPTResource{}); err != nil {
			return nil, err
		}
	}
	return b.Finish()
}

func soaRR(b *dnsmessage.Builder, zone string) error {
	return b.SOAResource(dnsmessage.ResourceHeader{Name: mustName(zone), Class: dnsmessage.ClassINET, TTL: 30},
		dnsmessage.SOAResource{NS: mustName("ns1." + zone), MBox: mustName("hostmaster." + zone),
			Serial: 2024010101, Refresh: 3600, Retry: 600, Expire: 86400, MinTTL: 30})
}

var dnsTypes = map[string]dnsmessage.Type{
	"A": dnsmessage.TypeA, "AAAA": dnsmessage.TypeAAAA, "CNAME": dnsmessage.TypeCNAME,
	"TXT": dnsmessage.TypeTXT, "SOA": dnsmessage.TypeSOA, "NS": dnsmessage.TypeNS,
	"MX": dnsmessage.TypeMX, "PTR": dnsmessage.TypePTR, "SRV": dnsmessage.TypeSRV, "ANY": dnsmessage.TypeALL,
}

func typeName(t dnsmessage.Type) string {
	for k, v := range dnsTypes {
		if v == t {
			return k
		}
	}
	return fmt.Sprintf("TYPE%d", uint16(t))
}

func rcodeName(c dnsmessage.RCode) string {
	switch c {
	case dnsmessage.RCodeSuccess:
		return "NOERROR"
	case dnsmessage.RCodeNameError:
		return "NXDOMAIN"
	case dnsmessage.RCodeRefused:
		return "REFUSED"
	case dnsmessage.RCodeFormatError:
		return "FORMERR"
	case dnsmessage.RCodeServerFailure:
		return "SERVFAIL"
	case dnsmessage.RCodeNotImplemented:
		return "NOTIMP"
	}
	return fmt.Sprintf("RCODE%d", int(c))
}

// DNSAnswer is what a lookup got back.
type DNSAnswer struct {
	RCode     string
	Truncated bool
	// Records are "name TYPE value" with a final TTL, e.g.
	// "www.example.test CNAME cdn.example.test 30".
	Records []string
	// Addrs are the A and AAAA addresses, in answer order.
	Addrs []netip.Addr
	// TTL is the smallest TTL of the answer records.
	TTL uint32
}

// lookupDNS sends one query for name/type to server over UDP (retrying over
// TCP if the answer is truncated) or TCP.
func lookupDNS(ctx context.Context, env *Env, server, name, qtype string, tcp bool, timeout time.Duration) (DNSAnswer, error) {
	t, ok := dnsTypes[strings.ToUpper(qtype)]
	if !ok {
		return DNSAnswer{}, fmt.Errorf("dns: unknown type %q", qtype)
	}
	qn, err := dnsmessage.NewName(strings.TrimSuffix(name, ".") + ".")
	if err != nil {
		return DNSAnswer{}, fmt.Errorf("dns: name %q: %w", name, err)
	}
	id := uint16(rand.Uint32())
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	b.EnableCompression()
	b.StartQuestions()
	b.Question(dnsmessage.Question{Name: qn, Type: t, Class: dnsmessage.ClassINET})
	b.StartAdditionals()
	var oh dnsmessage.ResourceHeader
	oh.SetEDNS0(1232, dnsmessage.RCodeSuccess, false)
	b.OPTResource(oh, dnsmessage.OPTResource{})
	query, err := b.Finish()
	if err != nil {
		return DNSAnswer{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := env.dialer(timeout)
	network := "udp"
	if tcp {
		network = "tcp"
	}
	c, err := d.DialContext(ctx, network, server)
	if err != nil {
		return DNSAnswer{}, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	var resp []byte
	if tcp {
		if _, err := c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(query))), query...)); err != nil {
			return DNSAnswer{}, err
		}
		var l [2]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return DNSAnswer{}, err
		}
		resp = make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(c, resp); err != nil {
			return DNSAnswer{}, err
		}
	} else {
		if _, err := c.Write(query); err != nil {
			return DNSAnswer{}, err
		}
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return DNSAnswer{}, err
			}
			if n >= 2 && binary.BigEndian.Uint16(buf) == id {
				resp = buf[:n]
				break
			}
		}
	}
	ans, err := parseAnswer(resp, id)
	if err == nil && ans.Truncated && !tcp {
		return lookupDNS(ctx, env, server, name, qtype, true, timeout)
	}
	return ans, err
}

func parseAnswer(msg []byte, id uint16) (DNSAnswer, error) {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil {
		return DNSAnswer{}, fmt.Errorf("dns: bad response: %w", err)
	}
	if h.ID != id || !h.Response {
		return DNSAnswer{}, errors.New("dns: response does not match the query")
	}
	ans := DNSAnswer{RCode: rcodeName(h.RCode), Truncated: h.Truncated}
	p.SkipAllQuestions()
	for {
		r, err := p.Answer()
		if err != nil {
			break
		}
		n := canonical(r.Header.Name.String())
		if ans.TTL == 0 || r.Header.TTL < ans.TTL {
			ans.TTL = r.Header.TTL
		}
		var val string
		switch b := r.Body.(type) {
		case *dnsmessage.AResource:
			a := netip.AddrFrom4(b.A)
			ans.Addrs = append(ans.Addrs, a)
			val = a.String()
		case *dnsmessage.AAAAResource:
			a := netip.AddrFrom16(b.AAAA)
			ans.Addrs = append(ans.Addrs, a)
			val = a.String()
		case *dnsmessage.CNAMEResource:
			val = canonical(b.CNAME.String())
		case *dnsmessage.TXTResource:
			val = fmt.Sprintf("%q", strings.Join(b.TXT, ""))
		case *dnsmessage.SOAResource:
			val = canonical(b.NS.String())
		case *dnsmessage.NSResource:
			val = canonical(b.NS.String())
		default:
			val = "?"
		}
		ans.Records = append(ans.Records, fmt.Sprintf("%s %s %s %d", n, typeName(r.Header.Type), val, r.Header.TTL))
	}
	return ans, nil
}

// DNSQuery is one lookup of a dns-client.
type DNSQuery struct {
	Name string `json:"name" yaml:"name"`
	Type string `json:"type,omitempty" yaml:"type"` // default A
	TCP  bool   `json:"tcp,omitempty" yaml:"tcp"`
}

// DNSClientConfig looks names up ("dns-client"), as every host's resolver
// does all day.
type DNSClientConfig struct {
	Env  `yaml:"-"`
	Pace `yaml:",inline"`
	// Server is "HOST:PORT"; empty: the lab resolver (Env.Resolver).
	Server  string     `json:"server,omitempty" yaml:"server"`
	Queries []DNSQuery `json:"queries" yaml:"queries"`
}

// SetDefaults paces a round every 10s.
func (c *DNSClientConfig) SetDefaults() {
	c.Pace.setDefaults(10 * time.Second)
	for i := range c.Queries {
		if c.Queries[i].Type == "" {
			c.Queries[i].Type = "A"
		}
	}
}

// Validate checks the configuration.
func (c DNSClientConfig) Validate() error {
	errs := []error{c.Pace.validate()}
	if c.Server != "" {
		errs = append(errs, checkHostPort("server", c.Server))
	}
	if len(c.Queries) == 0 {
		errs = append(errs, fieldErr("queries", "at least one query"))
	}
	for i, q := range c.Queries {
		if !validName(q.Name) {
			errs = append(errs, fieldErr(fmt.Sprintf("queries[%d].name", i), "%q is not a domain name", q.Name))
		}
		if _, ok := dnsTypes[strings.ToUpper(q.Type)]; q.Type != "" && !ok {
			errs = append(errs, fieldErr(fmt.Sprintf("queries[%d].type", i), "%q: want one of A, AAAA, CNAME, TXT, SOA, NS, MX, PTR, SRV, ANY", q.Type))
		}
	}
	return joinNonNil(errs)
}

// Refs returns the server, if set.
func (c *DNSClientConfig) Refs() []*string {
	if c.Server == "" {
		return nil
	}
	return []*string{&c.Server}
}

// RunDNSClient runs every query once per round.
func RunDNSClient(ctx context.Context, cfg DNSClientConfig) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("dns-client: %w", err)
	}
	server := cfg.Server
	if server == "" {
		server = cfg.Resolver
	}
	if server == "" {
		return errors.New("dns-client: no server and no lab resolver")
	}
	log := cfg.log().With("client", "dns-client")
	return cfg.Pace.loop(ctx, func(ctx context.Context, _ int) {
		for _, q := range cfg.Queries {
			typ := q.Type
			if typ == "" {
				typ = "A"
			}
			ans, err := lookupDNS(ctx, &cfg.Env, server, q.Name, typ, q.TCP, cfg.timeout())
			if err != nil {
				failed(ctx, log, "lookup", "name", q.Name, "type", typ, "tcp", q.TCP, "err", err)
				continue
			}
			log.Info("lookup", "name", q.Name, "type", typ, "tcp", q.TCP, "rcode", ans.RCode, "answers", strings.Join(ans.Records, "; "))
		}
	})
}
