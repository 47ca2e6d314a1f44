package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/bulkhead/bulkhead/internal/ports"
	"github.com/bulkhead/bulkhead/internal/tagexpr"
)

// KnownApps are the application identities a ContextProfile may name.
var KnownApps = []string{
	"APP_TLS", "APP_HTTPS", "APP_HTTP", "APP_HTTP2", "APP_SSH", "APP_DNS", "APP_SMB", "APP_RDP",
	"APP_LDAP", "APP_KERBEROS", "APP_MYSQL", "APP_POSTGRES", "APP_REDIS", "APP_MONGODB", "APP_SMTP",
	"APP_FTP", "APP_NTP", "APP_SNMP", "APP_UNKNOWN",
}

// TLSApps are the apps whose traffic is TLS and so has a TLS version that
// minVersion and maxVersion constrain.
var TLSApps = []string{"APP_TLS", "APP_HTTPS", "APP_HTTP2"}

// TLSVersions are the values of minVersion and maxVersion, in order; they
// compare correctly as strings.
var TLSVersions = []string{"1.0", "1.1", "1.2", "1.3"}

var (
	actions    = []string{string(ActionAllow), string(ActionDrop), string(ActionReject)}
	directions = []string{string(DirectionIn), string(DirectionOut), string(DirectionInOut)}
	modes      = []string{string(ModeEnforce), string(ModeStaged)}
)

// maxNameLen is the longest name, as for a DNS name.
const maxNameLen = 253

// checkName returns why s is not a valid object or rule name, or "".
// Names are DNS-name-like: [a-z0-9]([-a-z0-9.]*[a-z0-9])?, at most 253 long.
func checkName(s string) string {
	if s == "" {
		return "missing required field"
	}
	if len(s) > maxNameLen {
		return fmt.Sprintf("name is %d characters long; the limit is %d", len(s), maxNameLen)
	}
	ok := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
		if !alnum && (c != '-' && c != '.' || i == 0 || i == len(s)-1) {
			ok = false
			break
		}
	}
	if !ok {
		return fmt.Sprintf("%q is not a valid name: use lowercase letters, digits, \"-\" and \".\", and start and end with a letter or digit", s)
	}
	return ""
}

// ParseIPOrCIDR parses an address ("10.0.0.5", "fd00::1") as a single-host
// prefix, or a CIDR prefix ("10.0.0.0/8") whose host bits are zero. IPv4
// addresses written as IPv4-mapped IPv6 are unmapped; zones are refused.
func ParseIPOrCIDR(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad CIDR %q", s)
		}
		if m := p.Masked(); m != p {
			return netip.Prefix{}, fmt.Errorf("CIDR %q has host bits set; did you mean %q?", s, m.String())
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad IP address %q", s)
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("IP address %q has a zone; write it without %%%s", s, a.Zone())
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// looksLikeIP says whether s was meant as an address or CIDR rather than a
// name: it has ":" or "/", or is only digits and dots.
func looksLikeIP(s string) bool {
	if strings.ContainsAny(s, ":/") {
		return true
	}
	return s != "" && strings.Trim(s, "0123456789.") == "" && strings.Contains(s, ".")
}

// Peer is one entry of a rule's sources or destinations: a group by name, or
// an address prefix written inline.
type Peer struct {
	Group  string       // set for a group reference
	Prefix netip.Prefix // valid for an IP or CIDR literal
}

// ParsePeer reads an entry of Rule.Sources or Rule.Destinations. What reads
// as an address is one (group names that read as addresses are refused).
func ParsePeer(s string) (Peer, error) {
	if s == "" {
		return Peer{}, fmt.Errorf("empty entry; write a group name, an IP address or a CIDR")
	}
	if looksLikeIP(s) {
		p, err := ParseIPOrCIDR(s)
		if err != nil {
			return Peer{}, err
		}
		return Peer{Prefix: p}, nil
	}
	if checkName(s) != "" {
		return Peer{}, fmt.Errorf("%q is neither a group name nor an IP address or CIDR", s)
	}
	return Peer{Group: s}, nil
}

// ServiceRef is one entry of a rule's services: a Service by name, or a port
// spec written inline.
type ServiceRef struct {
	Name string     // set for a Service reference
	Spec ports.Spec // the inline spec when Name is empty
}

// IsInlineService says whether an entry of Rule.Services is a port spec
// ("tcp/443", "icmp", "any") rather than the name of a Service: it has a
// "/" or is a bare protocol name.
func IsInlineService(s string) bool {
	if strings.Contains(s, "/") {
		return true
	}
	switch strings.ToLower(s) {
	case "any", "tcp", "udp", "sctp", "icmp", "icmpv6":
		return true
	}
	return false
}

// ParseServiceRef reads an entry of Rule.Services.
func ParseServiceRef(s string) (ServiceRef, error) {
	if s == "" {
		return ServiceRef{}, fmt.Errorf("empty entry; write a service name or a port spec such as \"tcp/443\"")
	}
	if IsInlineService(s) {
		spec, err := ports.Parse(s)
		if err != nil {
			return ServiceRef{}, err
		}
		return ServiceRef{Spec: spec}, nil
	}
	if checkName(s) != "" {
		return ServiceRef{}, fmt.Errorf("%q is neither a service name nor a port spec such as \"tcp/443\"", s)
	}
	return ServiceRef{Name: s}, nil
}

// checkFQDN returns why s is not a valid FQDN pattern, or "". A pattern is a
// lowercase DNS name; "*" may stand for the whole leftmost label only.
func checkFQDN(s string) string {
	if s == "" {
		return "empty FQDN"
	}
	if len(s) > maxNameLen {
		return fmt.Sprintf("FQDN %q is longer than %d characters", s, maxNameLen)
	}
	if strings.HasSuffix(s, ".") {
		return fmt.Sprintf("FQDN %q: write it without the trailing dot", s)
	}
	labels := strings.Split(s, ".")
	for i, l := range labels {
		if l == "*" {
			if i != 0 {
				return fmt.Sprintf("FQDN %q: \"*\" may only be the leftmost label", s)
			}
			if len(labels) < 2 {
				return fmt.Sprintf("FQDN %q: \"*\" alone matches every name; leave fqdns out instead", s)
			}
			continue
		}
		if l == "" || len(l) > 63 {
			return fmt.Sprintf("FQDN %q: labels are 1 to 63 characters", s)
		}
		if strings.Contains(l, "*") {
			return fmt.Sprintf("FQDN %q: \"*\" must be a whole label, as in *.example.com", s)
		}
		if strings.ToLower(l) != l {
			return fmt.Sprintf("FQDN %q: write it in lowercase", s)
		}
		for j := 0; j < len(l); j++ {
			c := l[j]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return fmt.Sprintf("FQDN %q: bad character %q", s, c)
			}
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Sprintf("FQDN %q: a label cannot start or end with \"-\"", s)
		}
	}
	return ""
}

// checker collects the errors of one object, placing each at the position
// its field was written at, if known.
type checker struct {
	src  Source
	kind Kind
	name string
	errs ErrorList
}

func newChecker(d Document) *checker {
	h := d.Object.GetHeader()
	return &checker{src: d.Source, kind: KindOf(d.Object), name: h.Metadata.Name}
}

func (c *checker) add(field, format string, args ...any) {
	e := &FieldError{Source: c.src, Kind: c.kind, Name: c.name, Field: field, Reason: fmt.Sprintf(format, args...)}
	if pos, ok := c.src.At.Lookup(field); ok {
		e.Line, e.Column = pos.Line, pos.Column
	} else {
		e.Line = c.src.Line
	}
	c.errs = append(c.errs, e)
}

// oneOf checks an enumerated field; empty is an error only when required.
func (c *checker) oneOf(field, v string, allowed []string, what string, required bool) {
	if v == "" {
		if required {
			c.add(field, "missing required field; one of %s", strings.Join(allowed, ", "))
		}
		return
	}
	if slices.Contains(allowed, v) {
		return
	}
	if s := suggest(v, allowed); s != "" {
		c.add(field, "unknown %s %q%s", what, v, s)
		return
	}
	c.add(field, "unknown %s %q; one of %s", what, v, strings.Join(allowed, ", "))
}

// names checks a list of references by name to objects of some kind.
func (c *checker) names(field string, list []string, what string) {
	for i, n := range list {
		if r := checkName(n); r != "" {
			f := fmt.Sprintf("%s[%d]", field, i)
			if n == "" {
				c.add(f, "empty %s name", what)
			} else {
				c.add(f, "%s", strings.Replace(r, "valid name", "valid "+what+" name", 1))
			}
		}
	}
}

func (c *checker) fqdns(field string, list []string) {
	for i, f := range list {
		if r := checkFQDN(f); r != "" {
			c.add(fmt.Sprintf("%s[%d]", field, i), "%s", r)
		}
	}
}

// ValidateObject checks what can be checked of one object alone: names,
// addresses, expressions, port specs and enumerations. References to other
// objects are checked by Set.Validate.
func ValidateObject(d Document) ErrorList {
	c := newChecker(d)
	h := d.Object.GetHeader()
	if h.APIVersion != "" && h.APIVersion != APIVersion {
		c.add("apiVersion", "unsupported version %q; expected %q", h.APIVersion, APIVersion)
	}
	if h.Kind != "" && h.Kind != c.kind {
		c.add("kind", "kind %q does not match the object, a %s", h.Kind, c.kind)
	}
	if r := checkName(h.Metadata.Name); r != "" {
		c.add("metadata.name", "%s", r)
	}
	switch o := d.Object.(type) {
	case *Workload:
		c.workload(&o.Spec)
	case *Group:
		if looksLikeIP(o.Metadata.Name) && checkName(o.Metadata.Name) == "" {
			c.add("metadata.name", "%q is not a valid group name: rules would read it as an IP address", o.Metadata.Name)
		}
		c.group(&o.Spec)
	case *Service:
		if IsInlineService(o.Metadata.Name) {
			c.add("metadata.name", "%q is not a valid service name: rules would read it as a port spec", o.Metadata.Name)
		}
		if len(o.Spec.Ports) == 0 {
			c.add("spec.ports", "a service needs at least one port spec, such as \"tcp/443\"")
		}
		for i, p := range o.Spec.Ports {
			if _, err := ports.Parse(p); err != nil {
				c.add(fmt.Sprintf("spec.ports[%d]", i), "%v", err)
			}
		}
	case *ContextProfile:
		c.profile(&o.Spec)
	case *Policy:
		c.policy(&o.Spec)
	case *DefaultRule:
		if h.Metadata.Name != "" && h.Metadata.Name != DefaultRuleName {
			c.add("metadata.name", "the default rule is named %q, not %q", DefaultRuleName, h.Metadata.Name)
		}
		c.oneOf("spec.action", string(o.Spec.Action), actions, "action", true)
	case *IDSProfile:
		c.idsProfile(&o.Spec)
	case *IDSVariables:
		c.idsVariables(h.Metadata.Name, &o.Spec)
	}
	return c.errs
}

func (c *checker) workload(s *WorkloadSpec) {
	if len(s.IPs) == 0 {
		c.add("spec.ips", "a workload needs at least one IP address")
	}
	seen := map[netip.Addr]int{}
	for i, ip := range s.IPs {
		f := fmt.Sprintf("spec.ips[%d]", i)
		if strings.Contains(ip, "/") {
			c.add(f, "bad IP address %q: a workload address has no prefix length", ip)
			continue
		}
		p, err := ParseIPOrCIDR(ip)
		if err != nil {
			c.add(f, "%v", err)
			continue
		}
		if j, dup := seen[p.Addr()]; dup {
			c.add(f, "address %s is listed twice (also spec.ips[%d])", ip, j)
			continue
		}
		seen[p.Addr()] = i
	}
	for _, k := range sortedKeys(s.Tags) {
		if !tagexpr.ValidKey(k) {
			c.add(joinKey("spec.tags", k), "tag key %q cannot be used in a match expression; keys are letters, digits and _ . - /, starting with a letter or _", k)
		}
	}
}

func (c *checker) group(s *GroupSpec) {
	if s.Match != "" {
		if _, err := tagexpr.Parse(s.Match); err != nil {
			c.add("spec.match", "%v", err)
		}
	}
	for i, ip := range s.IPs {
		if _, err := ParseIPOrCIDR(ip); err != nil {
			c.add(fmt.Sprintf("spec.ips[%d]", i), "%v", err)
		}
	}
	c.names("spec.groups", s.Groups, "group")
	for i, u := range s.Users {
		if strings.TrimSpace(u) == "" {
			c.add(fmt.Sprintf("spec.users[%d]", i), "empty user name")
		}
	}
	for i, g := range s.DirectoryGroups {
		if strings.TrimSpace(g) == "" {
			c.add(fmt.Sprintf("spec.directoryGroups[%d]", i), "empty directory group")
		}
	}
	c.fqdns("spec.fqdns", s.FQDNs)
}

func (c *checker) profile(s *ContextProfileSpec) {
	if len(s.Apps) == 0 && len(s.FQDNs) == 0 {
		c.add("spec", "a context profile needs at least one app or FQDN")
	}
	for i, a := range s.Apps {
		f := fmt.Sprintf("spec.apps[%d]", i)
		c.oneOf(f+".name", a.Name, KnownApps, "app", true)
		tls := slices.Contains(TLSApps, a.Name)
		for _, v := range []struct{ field, value string }{{"minVersion", a.MinVersion}, {"maxVersion", a.MaxVersion}} {
			if v.value == "" {
				continue
			}
			if !tls && slices.Contains(KnownApps, a.Name) {
				c.add(f+"."+v.field, "%s does not carry TLS; %s applies to %s", a.Name, v.field, strings.Join(TLSApps, ", "))
				continue
			}
			if !slices.Contains(TLSVersions, v.value) {
				c.add(f+"."+v.field, "unknown TLS version %q; one of %s", v.value, strings.Join(TLSVersions, ", "))
			}
		}
		if slices.Contains(TLSVersions, a.MinVersion) && slices.Contains(TLSVersions, a.MaxVersion) && a.MinVersion > a.MaxVersion {
			c.add(f+".minVersion", "minVersion %s is above maxVersion %s", a.MinVersion, a.MaxVersion)
		}
	}
	c.fqdns("spec.fqdns", s.FQDNs)
}

func (c *checker) policy(s *PolicySpec) {
	cats := make([]string, len(Categories))
	for i, x := range Categories {
		cats[i] = string(x)
	}
	c.oneOf("spec.category", string(s.Category), cats, "category", true)
	c.names("spec.appliedTo", s.AppliedTo, "group")
	c.oneOf("spec.l7FailMode", string(s.L7FailMode), []string{string(FailClosed), string(FailOpen)}, "fail mode", false)
	first := map[string]int{}
	for i, r := range s.Rules {
		f := fmt.Sprintf("spec.rules[%d]", i)
		if r.Name == "" {
			c.add(f+".name", "missing required field: every rule has a name, unique in its section")
		} else if why := checkName(r.Name); why != "" {
			c.add(f+".name", "%s", why)
		} else if j, dup := first[r.Name]; dup {
			c.add(f+".name", "duplicate rule name %q; first at spec.rules[%d]", r.Name, j)
		} else {
			first[r.Name] = i
		}
		c.rule(f, &r)
	}
}

func (c *checker) rule(f string, r *Rule) {
	for _, list := range []struct {
		field string
		peers []string
	}{{"sources", r.Sources}, {"destinations", r.Destinations}} {
		for i, p := range list.peers {
			if _, err := ParsePeer(p); err != nil {
				c.add(fmt.Sprintf("%s.%s[%d]", f, list.field, i), "%v", err)
			}
		}
	}
	for i, s := range r.Services {
		if _, err := ParseServiceRef(s); err != nil {
			c.add(fmt.Sprintf("%s.services[%d]", f, i), "%v", err)
		}
	}
	c.names(f+".profiles", r.Profiles, "context profile")
	c.oneOf(f+".action", string(r.Action), actions, "action", true)
	c.oneOf(f+".direction", string(r.Direction), directions, "direction", false)
	c.oneOf(f+".mode", string(r.Mode), modes, "mode", false)
}
