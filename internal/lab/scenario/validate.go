package scenario

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/bulkhead/bulkhead/internal/lab/apps"
)

// Launch is one application to start: `bulkhead lab app APP --config JSON`
// inside the workload's namespace, where JSON is Config marshalled.
type Launch struct {
	Workload string
	// Name is unique in the workload: the server's name, or the traffic
	// pattern's name.
	Name   string
	App    string
	Server bool
	// Config is complete: defaults filled in, workload names replaced by
	// addresses, Env.Allow set to the scenario's addresses and Env.Resolver
	// to the lab DNS server.
	Config apps.Config
}

// JSON is the configuration to pass to `bulkhead lab app`.
func (l *Launch) JSON() ([]byte, error) { return json.Marshal(l.Config) }

// LaunchOptions tune the launches.
type LaunchOptions struct {
	// CA, if set, issues the https servers' certificates, and clients
	// verify servers with it; else each https server makes its own CA and
	// clients do not verify.
	CA *apps.CA
}

// SetDefaults fills in every application's defaults (well-known ports,
// pacing) and the default traffic names.
func (s *Scenario) SetDefaults() {
	for i := range s.Workloads {
		for j := range s.Workloads[i].Apps {
			if _, c := s.Workloads[i].Apps[j].App(); c != nil {
				if d, ok := c.(apps.Defaulter); ok {
					d.SetDefaults()
				}
			}
		}
	}
	seen := map[string]int{}
	for i := range s.Traffic {
		t := &s.Traffic[i]
		name, c := t.App()
		if c != nil {
			if d, ok := c.(apps.Defaulter); ok {
				d.SetDefaults()
			}
		}
		if t.Name == "" && name != "" {
			base := t.From + "-" + name
			seen[base]++
			t.Name = base
			if seen[base] > 1 {
				t.Name = fmt.Sprintf("%s-%d", base, seen[base])
			}
		}
	}
}

// Validate checks the whole scenario and reports every problem.
func (s *Scenario) Validate() error {
	_, errs := s.build(LaunchOptions{})
	return errs.Err()
}

// Launches returns every application to start, servers first, each with its
// resolved configuration.
func (s *Scenario) Launches(opts LaunchOptions) ([]Launch, error) {
	l, errs := s.build(opts)
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return l, nil
}

var (
	scenarioNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)
	hostNameRE     = regexp.MustCompile(`^[a-z][a-z0-9]{0,11}$`)
	workloadNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,11}$`)
	tagKeyRE       = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,62}$`)
	tagValueRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)
	instanceNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

	private4 = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("172.16.0.0/12"), netip.MustParsePrefix("192.168.0.0/16")}
	ula6     = netip.MustParsePrefix("fc00::/7")
)

type builder struct {
	s      *Scenario
	opts   LaunchOptions
	errs   ErrorList
	byName map[string]*Workload
	byAddr map[netip.Addr]*Workload
	ports  map[string]map[string]bool // workload -> "tcp/80"
	dns    *apps.DNSConfig            // the resolver's data, resolved
	dnsSrc *apps.DNSConfig            // the resolver's app as written
	// names maps a DNS name of the scenario's server to the workloads it
	// leads to (through CNAMEs and moves).
	names    map[string][]*Workload
	resolver string
	allow    []netip.Prefix
}

func (b *builder) errorf(object, path, format string, args ...any) {
	line, col := b.s.position(path)
	b.errs = append(b.errs, &Error{File: b.s.file, Line: line, Column: col, Object: object, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (s *Scenario) build(opts LaunchOptions) ([]Launch, ErrorList) {
	b := &builder{s: s, opts: opts, byName: map[string]*Workload{}, byAddr: map[netip.Addr]*Workload{}, ports: map[string]map[string]bool{}}
	b.checkTop()
	b.checkWorkloads()
	b.checkDNS()
	var launches []Launch
	for i := range s.Workloads {
		w := &s.Workloads[i]
		obj := fmt.Sprintf("workload %q", w.Name)
		seen := map[string]bool{}
		for j := range w.Apps {
			srv := &w.Apps[j]
			path := fmt.Sprintf("workloads[%d].apps[%d]", i, j)
			name, cfg, n := appOf(srv)
			if n != 1 {
				b.errorf(obj, path, "set exactly one application (one of %s), got %d", strings.Join(serverApps(), ", "), n)
				continue
			}
			inst := srv.Name
			if inst == "" {
				inst = name
			} else if !instanceNameRE.MatchString(inst) {
				b.errorf(obj, path+".name", "%q: want lower-case letters, digits and '-'", inst)
			}
			if seen[inst] {
				b.errorf(obj, path+".name", "two apps named %q on %s: give one a name", inst, w.Name)
			}
			seen[inst] = true
			if l, ok := b.launch(obj, path+"."+name, w.Name, inst, name, true, cfg, false); ok {
				launches = append(launches, l)
			}
		}
	}
	names := map[string]bool{}
	for i := range s.Traffic {
		t := &s.Traffic[i]
		path := fmt.Sprintf("traffic[%d]", i)
		obj := fmt.Sprintf("traffic %q", t.Name)
		if t.Name == "" {
			obj = ""
		}
		if t.From == "" {
			b.errorf(obj, path+".from", "missing: which workload runs this client")
		} else if b.byName[t.From] == nil {
			b.errorf(obj, path+".from", "no workload %q", t.From)
		}
		name, cfg, n := appOf(t)
		if n != 1 {
			b.errorf(obj, path, "set exactly one client application (one of %s), got %d", strings.Join(clientApps(), ", "), n)
			continue
		}
		if !instanceNameRE.MatchString(t.Name) {
			b.errorf(obj, path+".name", "%q: want lower-case letters, digits and '-', at most 32", t.Name)
		}
		if names[t.Name] {
			b.errorf(obj, path+".name", "two traffic patterns named %q", t.Name)
		}
		names[t.Name] = true
		if l, ok := b.launch(obj, path+"."+name, t.From, t.Name, name, false, cfg, name == "attacker"); ok {
			launches = append(launches, l)
		}
	}
	return launches, b.errs
}

func (b *builder) checkTop() {
	s := b.s
	if !scenarioNameRE.MatchString(s.Name) {
		b.errorf("", "name", "%q: want lower-case letters, digits and '-', at most 32", s.Name)
	}
	p4, err := netip.ParsePrefix(s.Network.IPv4)
	switch {
	case s.Network.IPv4 == "":
		b.errorf("", "network.ipv4", "missing: the workloads' IPv4 prefix, e.g. 10.77.0.0/16")
	case err != nil || !p4.Addr().Is4():
		b.errorf("", "network.ipv4", "%q is not an IPv4 prefix", s.Network.IPv4)
	case p4 != p4.Masked():
		b.errorf("", "network.ipv4", "%q has host bits set; did you mean %s?", s.Network.IPv4, p4.Masked())
	case s.loopback && netip.MustParsePrefix("127.0.0.0/8").Contains(p4.Addr()):
	case !slices.ContainsFunc(private4, func(p netip.Prefix) bool { return p.Bits() <= p4.Bits() && p.Contains(p4.Addr()) }):
		b.errorf("", "network.ipv4", "%s is not private (10/8, 172.16/12, 192.168/16): the lab only uses addresses that cannot be anyone else's", p4)
	}
	if s.Network.IPv6 != "" {
		p6, err := netip.ParsePrefix(s.Network.IPv6)
		switch {
		case err != nil || !p6.Addr().Is6():
			b.errorf("", "network.ipv6", "%q is not an IPv6 prefix", s.Network.IPv6)
		case p6 != p6.Masked():
			b.errorf("", "network.ipv6", "%q has host bits set; did you mean %s?", s.Network.IPv6, p6.Masked())
		case !ula6.Contains(p6.Addr()) || p6.Bits() < 7:
			b.errorf("", "network.ipv6", "%s is not unique local (fc00::/7)", p6)
		}
	}
	if d := s.Network.Domain; d != "" && !validDNSName(d) {
		b.errorf("", "network.domain", "%q is not a domain name", d)
	}
	if len(s.Hosts) == 0 {
		b.errorf("", "hosts", "at least one host")
	}
	hosts := map[string]bool{}
	for i, h := range s.Hosts {
		if !hostNameRE.MatchString(h.Name) {
			b.errorf("", fmt.Sprintf("hosts[%d].name", i), "%q: want 1-12 lower-case letters and digits, starting with a letter", h.Name)
		}
		if hosts[h.Name] {
			b.errorf("", fmt.Sprintf("hosts[%d].name", i), "host %q twice", h.Name)
		}
		hosts[h.Name] = true
	}
}

func validDNSName(n string) bool {
	n = strings.TrimSuffix(n, ".")
	if n == "" || len(n) > 253 {
		return false
	}
	for l := range strings.SplitSeq(n, ".") {
		if l == "" || len(l) > 63 || strings.HasPrefix(l, "-") || strings.HasSuffix(l, "-") {
			return false
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

func (b *builder) checkWorkloads() {
	s := b.s
	hosts := map[string]bool{}
	for _, h := range s.Hosts {
		hosts[h.Name] = true
	}
	p4, _ := netip.ParsePrefix(s.Network.IPv4)
	p6, err6 := netip.ParsePrefix(s.Network.IPv6)
	if len(s.Workloads) == 0 {
		b.errorf("", "workloads", "at least one workload")
	}
	for i := range s.Workloads {
		w := &s.Workloads[i]
		path := fmt.Sprintf("workloads[%d]", i)
		obj := fmt.Sprintf("workload %q", w.Name)
		if !workloadNameRE.MatchString(w.Name) {
			b.errorf(obj, path+".name", "%q: want 1-12 lower-case letters, digits and '-', starting with a letter (it names a network interface)", w.Name)
		}
		dup := b.byName[w.Name] != nil
		if dup {
			b.errorf(obj, path+".name", "workload %q twice", w.Name)
		} else {
			b.byName[w.Name] = w
		}
		switch {
		case w.Host == "":
			b.errorf(obj, path+".host", "missing: which host the workload runs on")
		case !hosts[w.Host]:
			b.errorf(obj, path+".host", "no host %q", w.Host)
		}
		a4, err := netip.ParseAddr(w.IPv4)
		switch {
		case w.IPv4 == "":
			b.errorf(obj, path+".ipv4", "missing")
		case err != nil || !a4.Is4():
			b.errorf(obj, path+".ipv4", "%q is not an IPv4 address", w.IPv4)
		case p4.IsValid() && !p4.Contains(a4):
			b.errorf(obj, path+".ipv4", "%s is outside network.ipv4 %s", a4, p4)
		case b.byAddr[a4] != nil:
			b.errorf(obj, path+".ipv4", "%s is already %s's", a4, b.byAddr[a4].Name)
		default:
			b.byAddr[a4] = w
			b.allow = append(b.allow, netip.PrefixFrom(a4, 32))
		}
		if w.IPv6 != "" {
			a6, err := netip.ParseAddr(w.IPv6)
			switch {
			case err != nil || !a6.Is6() || a6.Is4In6() || a6.Zone() != "":
				b.errorf(obj, path+".ipv6", "%q is not an IPv6 address", w.IPv6)
			case err6 != nil:
				b.errorf(obj, path+".ipv6", "set network.ipv6 to give workloads IPv6 addresses")
			case !p6.Contains(a6):
				b.errorf(obj, path+".ipv6", "%s is outside network.ipv6 %s", a6, p6)
			case b.byAddr[a6] != nil:
				b.errorf(obj, path+".ipv6", "%s is already %s's", a6, b.byAddr[a6].Name)
			default:
				b.byAddr[a6] = w
				b.allow = append(b.allow, netip.PrefixFrom(a6, 128))
			}
		}
		for _, m := range []struct {
			field string
			tags  map[string]string
		}{{"tags", w.Tags}, {"truth", w.Truth}} {
			for _, k := range sortedKeys(m.tags) {
				f := fmt.Sprintf("%s.%s[%q]", path, m.field, k)
				if !tagKeyRE.MatchString(k) {
					b.errorf(obj, f, "tag key %q: want lower-case letters, digits, '_', '.', '-'", k)
				}
				if !tagValueRE.MatchString(m.tags[k]) {
					b.errorf(obj, f, "tag value %q: want 1-63 letters, digits, '_', '.', '-'", m.tags[k])
				}
			}
		}
		// What listens where, for checking that clients aim at something.
		ports := map[string]bool{}
		for j := range w.Apps {
			name, cfg, n := appOf(&w.Apps[j])
			if n != 1 {
				continue
			}
			for _, p := range listens(name, cfg) {
				if ports[p] {
					b.errorf(obj, fmt.Sprintf("%s.apps[%d].%s.port", path, j, name), "%s is already taken by another app of %s", p, w.Name)
				}
				ports[p] = true
			}
		}
		if !dup {
			b.ports[w.Name] = ports
		}
	}
}

// listens returns "tcp/PORT" (and "udp/PORT") for a server.
func listens(name string, cfg apps.Config) []string {
	var port int
	switch c := cfg.(type) {
	case *apps.HTTPConfig:
		port = c.Port
	case *apps.HTTPSConfig:
		port = c.Port
	case *apps.APIConfig:
		port = c.Port
	case *apps.DBConfig:
		port = c.Port
	case *apps.CacheConfig:
		port = c.Port
	case *apps.SSHConfig:
		port = c.Port
	case *apps.LDAPConfig:
		port = c.Port
	case *apps.DNSConfig:
		return []string{fmt.Sprintf("tcp/%d", c.Port), fmt.Sprintf("udp/%d", c.Port)}
	default:
		return nil
	}
	return []string{fmt.Sprintf("tcp/%d", port)}
}

func sortedKeys(m map[string]string) []string {
	k := make([]string, 0, len(m))
	for x := range m {
		k = append(k, x)
	}
	sort.Strings(k)
	return k
}

// checkDNS finds the resolver, completes its data (workload records, the
// scenario's domain) and maps its names to workloads.
func (b *builder) checkDNS() {
	s := b.s
	b.names = map[string][]*Workload{}
	if s.Network.DNS == "" {
		if s.Network.Domain != "" {
			b.errorf("", "network.dns", "missing: network.domain needs a DNS server (the workload that runs the dns app)")
		}
		return
	}
	w := b.byName[s.Network.DNS]
	if w == nil {
		b.errorf("", "network.dns", "no workload %q", s.Network.DNS)
		return
	}
	var dns *apps.DNSConfig
	for j := range w.Apps {
		if w.Apps[j].DNS != nil {
			dns = w.Apps[j].DNS
			break
		}
	}
	if dns == nil {
		b.errorf("", "network.dns", "workload %q runs no dns app", w.Name)
		return
	}
	b.resolver = net.JoinHostPort(w.IPv4, strconv.Itoa(dns.Port))
	b.dnsSrc = dns
	b.dns = b.resolveDNS(dns)
	b.mapNames()
}

// resolveDNS returns a copy of cfg with workload records replaced by
// addresses and the scenario's domain filled with every workload's name.
func (b *builder) resolveDNS(cfg *apps.DNSConfig) *apps.DNSConfig {
	cc, err := clone("dns", cfg)
	if err != nil {
		b.errorf("", "network.dns", "%v", err)
		return &apps.DNSConfig{}
	}
	c := cc.(*apps.DNSConfig)
	domain := strings.TrimSuffix(strings.ToLower(b.s.Network.Domain), ".")
	found := domain == ""
	for i := range c.Zones {
		z := &c.Zones[i]
		have := map[string]bool{}
		for j := range z.Records {
			r := &z.Records[j]
			have[strings.ToLower(r.Name)] = true
			if r.Workload == "" {
				continue
			}
			if w := b.byName[r.Workload]; w != nil {
				r.A = append(r.A, w.IPv4)
				if w.IPv6 != "" {
					r.AAAA = append(r.AAAA, w.IPv6)
				}
				r.Workload = ""
			}
		}
		if strings.TrimSuffix(strings.ToLower(z.Name), ".") != domain {
			continue
		}
		found = true
		for _, w := range b.s.Workloads {
			if have[w.Name] || !w.Addr4().IsValid() {
				continue // a record of the zone wins; bad names and addresses are reported already
			}
			have[w.Name] = true
			r := apps.Record{Name: w.Name, A: []string{w.IPv4}}
			if w.IPv6 != "" {
				r.AAAA = []string{w.IPv6}
			}
			z.Records = append(z.Records, r)
		}
	}
	for i := range c.Moves {
		for j, t := range c.Moves[i].Targets {
			if w := b.byName[t]; w != nil {
				c.Moves[i].Targets[j] = w.IPv4
			}
		}
	}
	if !found {
		b.errorf("", "network.domain", "the dns app of %s has no zone %q", b.s.Network.DNS, domain)
	}
	return c
}

// mapNames follows every name of the DNS data to the workloads it leads to.
func (b *builder) mapNames() {
	type data struct {
		addrs []string
		cname string
	}
	all := map[string]data{}
	for _, z := range b.dns.Zones {
		zn := strings.TrimSuffix(strings.ToLower(z.Name), ".")
		for _, r := range z.Records {
			n := strings.ToLower(r.Name)
			switch {
			case n == "@" || n == "":
				n = zn
			case strings.HasSuffix(n, "."):
				n = strings.TrimSuffix(n, ".")
			default:
				n += "." + zn
			}
			all[n] = data{addrs: append(append([]string(nil), r.A...), r.AAAA...), cname: strings.TrimSuffix(strings.ToLower(r.CNAME), ".")}
		}
	}
	for _, m := range b.dns.Moves {
		var addrs []string
		for _, t := range m.Targets {
			if w := b.byName[t]; w != nil {
				addrs = append(addrs, w.IPv4)
			} else {
				addrs = append(addrs, t)
			}
		}
		all[strings.TrimSuffix(strings.ToLower(m.Name), ".")] = data{addrs: addrs}
	}
	for n := range all {
		cur := n
		for hop := 0; hop < 10; hop++ {
			d, ok := all[cur]
			if !ok {
				break
			}
			if d.cname != "" {
				cur = d.cname
				continue
			}
			for _, a := range d.addrs {
				if ip, err := netip.ParseAddr(a); err == nil && b.byAddr[ip] != nil && !slices.Contains(b.names[n], b.byAddr[ip]) {
					b.names[n] = append(b.names[n], b.byAddr[ip])
				}
			}
			break
		}
		if _, ok := b.names[n]; !ok {
			b.names[n] = nil // exists, leads to no workload
		}
	}
}

// clone deep-copies an app configuration through its JSON form, which is
// also what the app will receive.
func clone(app string, c apps.Config) (apps.Config, error) {
	j, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("cannot be passed to the app as JSON: %w", err)
	}
	out, err := apps.Decode(app, j)
	if err != nil {
		return nil, fmt.Errorf("does not survive JSON: %w", err)
	}
	return out, nil
}

// launch checks one application and returns it resolved.
func (b *builder) launch(obj, path, workload, inst, app string, server bool, cfg apps.Config, anyTarget bool) (Launch, bool) {
	c, err := clone(app, cfg)
	if err != nil {
		b.errorf(obj, path, "%v", err)
		return Launch{}, false
	}
	nerr := len(b.errs)
	if r, ok := c.(apps.Referrer); ok {
		orig := cfg.(apps.Referrer).Refs()
		for i, ref := range r.Refs() {
			b.resolveRef(obj, path+refPath(cfg, orig[i]), ref, anyTarget)
		}
	}
	if d, ok := c.(*apps.DNSConfig); ok && b.dns != nil && cfg == apps.Config(b.dnsSrc) {
		*d = *b.dns
	} else if ok {
		*d = *b.resolveDNSStandalone(d)
	}
	b.setEnv(c, workload)
	for _, fe := range apps.FieldErrors(c.Validate()) {
		p := path
		if fe.Field != "" {
			p += "." + fe.Field
		}
		b.errorf(obj, p, "%s", fe.Err)
	}
	return Launch{Workload: workload, Name: inst, App: app, Server: server, Config: c}, len(b.errs) == nerr
}

// resolveDNSStandalone resolves workload records of a dns app that is not
// the scenario's resolver.
func (b *builder) resolveDNSStandalone(d *apps.DNSConfig) *apps.DNSConfig {
	saved := b.s.Network.Domain
	b.s.Network.Domain = ""
	defer func() { b.s.Network.Domain = saved }()
	return b.resolveDNS(d)
}

// refPath finds the field path (".a.b[2]") of ref inside cfg, for error
// positions; "" if it is not there.
func refPath(cfg apps.Config, ref *string) string {
	p, _ := findPtr(reflect.ValueOf(cfg), "", ref)
	return p
}

// findPtr walks v (structs by their YAML names, inline ones flattened,
// slices, pointers) for the string field at address ref.
func findPtr(v reflect.Value, path string, ref *string) (string, bool) {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return "", false
		}
		return findPtr(v.Elem(), path, ref)
	case reflect.String:
		if v.CanAddr() && v.Addr().Interface() == any(ref) {
			return path, true
		}
	case reflect.Slice:
		for i := range v.Len() {
			if p, ok := findPtr(v.Index(i), fmt.Sprintf("%s[%d]", path, i), ref); ok {
				return p, true
			}
		}
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("yaml")
			if !f.IsExported() || tag == "-" {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			sub := path + "." + name
			if opts == "inline" {
				sub = path
			}
			if p, ok := findPtr(v.Field(i), sub, ref); ok {
				return p, true
			}
		}
	}
	return "", false
}

// resolveRef checks one reference and rewrites a workload name in it into
// the workload's IPv4 address.
func (b *builder) resolveRef(obj, path string, ref *string, anyTarget bool) {
	orig := *ref
	host, port, isURL := splitRef(orig)
	if host == "" {
		return // the app's own validation says what is wrong
	}
	var targets []*Workload
	if ip, err := netip.ParseAddr(host); err == nil {
		w := b.byAddr[ip.Unmap()]
		if w == nil {
			b.errorf(obj, path, "%s is not the address of a workload of this scenario: the lab connects to nothing else", ip)
			return
		}
		targets = []*Workload{w}
	} else if !strings.Contains(host, ".") {
		w := b.byName[host]
		if w == nil {
			b.errorf(obj, path, "no workload %q%s", host, b.suggestWorkload(host))
			return
		}
		targets = []*Workload{w}
		*ref = replaceHost(*ref, host, w.IPv4, isURL)
	} else {
		n := strings.TrimSuffix(strings.ToLower(host), ".")
		ws, ok := b.names[n]
		if !ok {
			if b.dns == nil {
				b.errorf(obj, path, "%q is a name, but the scenario has no DNS server (network.dns)", host)
			} else {
				b.errorf(obj, path, "%q has no record in the lab DNS server (%s)", host, b.s.Network.DNS)
			}
			return
		}
		targets = ws
	}
	if anyTarget || port == 0 {
		return
	}
	for _, w := range targets {
		if !b.ports[w.Name][fmt.Sprintf("tcp/%d", port)] {
			b.errorf(obj, path, "%s: %s runs no app on tcp/%d", orig, w.Name, port)
		}
	}
}

func (b *builder) suggestWorkload(n string) string {
	names := make([]string, 0, len(b.byName))
	for k := range b.byName {
		names = append(names, k)
	}
	sort.Strings(names)
	if c := closest(n, names); c != "" {
		return fmt.Sprintf("; did you mean %q?", c)
	}
	return ""
}

// splitRef takes "HOST", "HOST:PORT" or "scheme://HOST[:PORT]/..." apart;
// port is 0 when not known.
func splitRef(ref string) (host string, port int, isURL bool) {
	if scheme, rest, ok := strings.Cut(ref, "://"); ok {
		auth := rest
		if i := strings.IndexAny(auth, "/?#"); i >= 0 {
			auth = auth[:i]
		}
		if h, p, err := net.SplitHostPort(auth); err == nil {
			n, _ := strconv.Atoi(p)
			return h, n, true
		}
		port = map[string]int{"http": 80, "https": 443}[strings.ToLower(scheme)]
		return strings.Trim(auth, "[]"), port, true
	}
	if h, p, err := net.SplitHostPort(ref); err == nil {
		n, _ := strconv.Atoi(p)
		return h, n, false
	}
	return strings.Trim(ref, "[]"), 0, false
}

// replaceHost swaps the host of ref, keeping the rest as written.
func replaceHost(ref, host, addr string, isURL bool) string {
	if isURL {
		scheme, rest, _ := strings.Cut(ref, "://")
		return scheme + "://" + addr + strings.TrimPrefix(rest, host)
	}
	if strings.HasPrefix(ref, host+":") {
		return addr + ref[len(host):]
	}
	if ref == host {
		return addr
	}
	return ref
}

// setEnv gives the app the scenario's addresses, resolver and CA.
func (b *builder) setEnv(c apps.Config, workload string) {
	env := apps.EnvOf(c)
	env.Allow = append([]netip.Prefix(nil), b.allow...)
	env.Resolver = b.resolver
	ca := b.opts.CA
	switch x := c.(type) {
	case *apps.HTTPSConfig:
		if len(x.Names) == 0 {
			x.Names = b.namesOf(workload)
		}
		if ca != nil {
			x.CACertPEM, x.CAKeyPEM = string(ca.CertPEM), string(ca.KeyPEM)
		}
	case *apps.ShopperConfig:
		if ca != nil {
			x.TLS.CACertPEM = string(ca.CertPEM)
		}
	case *apps.TLSClientConfig:
		if ca != nil {
			x.CACertPEM = string(ca.CertPEM)
		}
	}
}

// namesOf returns every DNS name that leads to the workload, then its
// addresses: what its certificate should hold.
func (b *builder) namesOf(workload string) []string {
	var out []string
	for n, ws := range b.names {
		for _, w := range ws {
			if w.Name == workload {
				out = append(out, n)
			}
		}
	}
	sort.Strings(out)
	if w := b.byName[workload]; w != nil {
		out = append(out, w.IPv4)
		if w.IPv6 != "" {
			out = append(out, w.IPv6)
		}
	}
	return out
}
