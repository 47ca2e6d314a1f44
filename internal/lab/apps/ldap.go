package apps

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// LDAPConfig is a small LDAPv3 directory ("ldap"): simple bind, search
// (base/one/subtree scopes, every filter but extensible match, attribute
// selection, the paged-results control), WhoAmI, unbind. Writes are refused.
// It is built from people and groups:
//
//	BaseDN                          dcObject, organization
//	cn=admin,BaseDN                 the service account (AdminPassword)
//	ou=people,BaseDN
//	  uid=alice,ou=people,BaseDN    inetOrgPerson: uid, cn, sn, mail, memberOf
//	ou=groups,BaseDN
//	  cn=hr,ou=groups,BaseDN        groupOfNames: cn, member (people and groups)
type LDAPConfig struct {
	Env `yaml:"-"`
	// Port to listen on; 0 picks a free one. Default 389.
	Port int `json:"port" yaml:"port"`
	// BaseDN is the directory's suffix. Default "dc=lab,dc=test".
	BaseDN string `json:"baseDN,omitempty" yaml:"baseDN"`
	// AdminPassword is the password of cn=admin,BaseDN; empty: no admin.
	AdminPassword string `json:"adminPassword,omitempty" yaml:"adminPassword"`
	// AnonymousRead lets anonymous binds search; the root DSE is always
	// readable.
	AnonymousRead bool         `json:"anonymousRead,omitempty" yaml:"anonymousRead"`
	People        []LDAPPerson `json:"people" yaml:"people"`
	Groups        []LDAPGroup  `json:"groups,omitempty" yaml:"groups"`
}

// LDAPPerson is one user of the directory.
type LDAPPerson struct {
	UID      string `json:"uid" yaml:"uid"`
	Name     string `json:"name,omitempty" yaml:"name"` // cn; default the uid
	Password string `json:"password" yaml:"password"`
	Mail     string `json:"mail,omitempty" yaml:"mail"`
}

// LDAPGroup is a group of people and of other groups (nesting).
type LDAPGroup struct {
	Name    string   `json:"name" yaml:"name"`
	Members []string `json:"members,omitempty" yaml:"members"` // uids
	Groups  []string `json:"groups,omitempty" yaml:"groups"`   // names of member groups
}

// SetDefaults fills in port 389 and the base DN.
func (c *LDAPConfig) SetDefaults() {
	if c.Port == 0 {
		c.Port = 389
	}
	if c.BaseDN == "" {
		c.BaseDN = "dc=lab,dc=test"
	}
}

// Validate checks the configuration.
func (c LDAPConfig) Validate() error {
	errs := []error{checkPort("port", c.Port)}
	if _, err := ldap.ParseDN(c.BaseDN); err != nil || c.BaseDN == "" {
		errs = append(errs, fieldErr("baseDN", "%q is not a DN", c.BaseDN))
	}
	uids := map[string]bool{}
	for i, p := range c.People {
		f := fmt.Sprintf("people[%d]", i)
		if !validRDNValue(p.UID) {
			errs = append(errs, fieldErr(f+".uid", "%q: want letters, digits, '.', '-', '_'", p.UID))
		}
		if uids[strings.ToLower(p.UID)] {
			errs = append(errs, fieldErr(f+".uid", "%q twice", p.UID))
		}
		uids[strings.ToLower(p.UID)] = true
		if p.Password == "" {
			errs = append(errs, fieldErr(f+".password", "missing"))
		}
	}
	groups := map[string]bool{}
	for _, g := range c.Groups {
		groups[strings.ToLower(g.Name)] = true
	}
	seen := map[string]bool{}
	for i, g := range c.Groups {
		f := fmt.Sprintf("groups[%d]", i)
		if !validRDNValue(g.Name) {
			errs = append(errs, fieldErr(f+".name", "%q: want letters, digits, '.', '-', '_'", g.Name))
		}
		if seen[strings.ToLower(g.Name)] {
			errs = append(errs, fieldErr(f+".name", "%q twice", g.Name))
		}
		seen[strings.ToLower(g.Name)] = true
		for j, m := range g.Members {
			if !uids[strings.ToLower(m)] {
				errs = append(errs, fieldErr(fmt.Sprintf("%s.members[%d]", f, j), "no person with uid %q", m))
			}
		}
		for j, m := range g.Groups {
			if !groups[strings.ToLower(m)] || strings.EqualFold(m, g.Name) {
				errs = append(errs, fieldErr(fmt.Sprintf("%s.groups[%d]", f, j), "no other group named %q", m))
			}
		}
	}
	return joinNonNil(errs)
}

func validRDNValue(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// LDAP result codes used here (RFC 4511 appendix A).
const (
	ldapSuccess               = 0
	ldapProtocolError         = 2
	ldapAuthMethodUnsupported = 7
	ldapNoSuchObject          = 32
	ldapInvalidCredentials    = 49
	ldapInsufficientAccess    = 50
	ldapUnavailable           = 52
	ldapUnwillingToPerform    = 53
)

// LDAP protocol operations (application tags).
const (
	opBindRequest    = 0
	opBindResponse   = 1
	opUnbindRequest  = 2
	opSearchRequest  = 3
	opSearchEntry    = 4
	opSearchDone     = 5
	opModifyRequest  = 6
	opAddRequest     = 8
	opDelRequest     = 10
	opModDNRequest   = 12
	opCompareRequest = 14
	opAbandonRequest = 16
	opExtendedReq    = 23
	opExtendedResp   = 24
)

const (
	oidPaging   = "1.2.840.113556.1.4.319"
	oidWhoAmI   = "1.3.6.1.4.1.4203.1.11.3"
	oidStartTLS = "1.3.6.1.4.1.1466.20037"
)

type ldapAttr struct {
	name string
	vals []string
}

type ldapEntry struct {
	dn       string
	norm     string // normalized DN
	attrs    []ldapAttr
	password string // for binds; never returned
}

func (e *ldapEntry) get(name string) []string {
	for _, a := range e.attrs {
		if strings.EqualFold(a.name, name) {
			return a.vals
		}
	}
	return nil
}

// normDN lower-cases a DN and drops blanks around separators, so that
// "UID=Alice, ou=People,dc=lab,dc=test" finds uid=alice,ou=people,...
func normDN(dn string) string {
	parsed, err := ldap.ParseDN(dn)
	if err != nil {
		return strings.ToLower(strings.TrimSpace(dn))
	}
	var rdns []string
	for _, r := range parsed.RDNs {
		var parts []string
		for _, a := range r.Attributes {
			parts = append(parts, strings.ToLower(a.Type)+"="+strings.ToLower(a.Value))
		}
		rdns = append(rdns, strings.Join(parts, "+"))
	}
	return strings.Join(rdns, ",")
}

type directory struct {
	base    string // normalized
	entries []*ldapEntry
	byDN    map[string]*ldapEntry
	anon    bool
	log     *slog.Logger
}

func newDirectory(cfg *LDAPConfig, log *slog.Logger) *directory {
	base := cfg.BaseDN
	if base == "" {
		base = "dc=lab,dc=test"
	}
	d := &directory{base: normDN(base), byDN: map[string]*ldapEntry{}, anon: cfg.AnonymousRead, log: log}
	add := func(dn, pw string, attrs ...ldapAttr) {
		e := &ldapEntry{dn: dn, norm: normDN(dn), attrs: attrs, password: pw}
		d.entries = append(d.entries, e)
		d.byDN[e.norm] = e
	}
	first := base
	if p, err := ldap.ParseDN(base); err == nil && len(p.RDNs) > 0 && len(p.RDNs[0].Attributes) > 0 {
		first = p.RDNs[0].Attributes[0].Value
	}
	add(base, "", ldapAttr{"objectClass", []string{"top", "dcObject", "organization"}},
		ldapAttr{"dc", []string{first}}, ldapAttr{"o", []string{"Bulkhead lab"}})
	if cfg.AdminPassword != "" {
		add("cn=admin,"+base, cfg.AdminPassword, ldapAttr{"objectClass", []string{"top", "organizationalRole", "simpleSecurityObject"}},
			ldapAttr{"cn", []string{"admin"}}, ldapAttr{"description", []string{"directory service account"}})
	}
	people := "ou=people," + base
	groups := "ou=groups," + base
	add(people, "", ldapAttr{"objectClass", []string{"top", "organizationalUnit"}}, ldapAttr{"ou", []string{"people"}})
	add(groups, "", ldapAttr{"objectClass", []string{"top", "organizationalUnit"}}, ldapAttr{"ou", []string{"groups"}})
	memberOf := map[string][]string{} // person or group DN -> direct groups' DNs
	groupDN := func(n string) string { return "cn=" + n + "," + groups }
	personDN := func(uid string) string { return "uid=" + uid + "," + people }
	for _, g := range cfg.Groups {
		for _, m := range g.Members {
			memberOf[normDN(personDN(m))] = append(memberOf[normDN(personDN(m))], groupDN(g.Name))
		}
		for _, m := range g.Groups {
			memberOf[normDN(groupDN(m))] = append(memberOf[normDN(groupDN(m))], groupDN(g.Name))
		}
	}
	for _, p := range cfg.People {
		cn := p.Name
		if cn == "" {
			cn = p.UID
		}
		f := strings.Fields(cn)
		sn := f[len(f)-1]
		mail := p.Mail
		if mail == "" {
			mail = p.UID + "@lab.test"
		}
		attrs := []ldapAttr{{"objectClass", []string{"top", "person", "organizationalPerson", "inetOrgPerson"}},
			{"uid", []string{p.UID}}, {"cn", []string{cn}}, {"sn", []string{sn}}, {"mail", []string{mail}}}
		if mo := memberOf[normDN(personDN(p.UID))]; len(mo) > 0 {
			attrs = append(attrs, ldapAttr{"memberOf", mo})
		}
		add(personDN(p.UID), p.Password, attrs...)
	}
	for _, g := range cfg.Groups {
		var members []string
		for _, m := range g.Members {
			members = append(members, personDN(m))
		}
		for _, m := range g.Groups {
			members = append(members, groupDN(m))
		}
		attrs := []ldapAttr{{"objectClass", []string{"top", "groupOfNames"}}, {"cn", []string{g.Name}}}
		if len(members) > 0 {
			attrs = append(attrs, ldapAttr{"member", members})
		}
		if mo := memberOf[normDN(groupDN(g.Name))]; len(mo) > 0 {
			attrs = append(attrs, ldapAttr{"memberOf", mo})
		}
		add(groupDN(g.Name), "", attrs...)
	}
	return d
}

// RunLDAP serves LDAP until ctx is cancelled.
func RunLDAP(ctx context.Context, cfg LDAPConfig) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("ldap: %w", err)
	}
	log := cfg.log().With("server", "ldap")
	d := newDirectory(&cfg, log)
	ln, err := cfg.listen(ctx, cfg.Port)
	if err != nil {
		return fmt.Errorf("ldap: %w", err)
	}
	log.Info("listening", "addr", ln.Addr().String(), "base", cfg.BaseDN, "entries", len(d.entries))
	return serveConns(ctx, ln, func(ctx context.Context, c net.Conn) { d.serve(c) })
}

type ldapSession struct {
	d      *directory
	w      net.Conn
	remote string
	bound  string // normalized DN; "" anonymous
}

func (d *directory) serve(c net.Conn) {
	s := &ldapSession{d: d, w: c, remote: c.RemoteAddr().String()}
	r := bufio.NewReader(c)
	for {
		c.SetReadDeadline(time.Now().Add(5 * time.Minute))
		raw, err := readBERElement(r, 1<<20)
		if err != nil {
			return
		}
		msg, _, err := parseBER(raw, 0)
		if err != nil || !msg.is(berUniversal, tagSequence) || len(msg.kids) < 2 {
			return // RFC 4511 4.1.1: no way to answer a message we cannot read
		}
		id, err := msg.kids[0].int()
		if err != nil {
			return
		}
		op := msg.kids[1]
		var controls []berNode
		if len(msg.kids) > 2 && msg.kids[2].is(berContext, 0) {
			controls = msg.kids[2].kids
		}
		if op.class != berApplication {
			return
		}
		if !s.handle(id, op, controls) {
			return
		}
	}
}

func (s *ldapSession) send(id int64, op []byte, controls ...[]byte) bool {
	kids := [][]byte{berInt(id), op}
	if len(controls) > 0 {
		kids = append(kids, berCons(berContext, 0, controls...))
	}
	s.w.SetWriteDeadline(time.Now().Add(30 * time.Second))
	_, err := s.w.Write(berSeq(kids...))
	return err == nil
}

func ldapResult(op, code int, matched, diag string, extra ...[]byte) []byte {
	kids := append([][]byte{berEnum(code), berOctets(matched), berOctets(diag)}, extra...)
	return berCons(berApplication, op, kids...)
}

// handle answers one request; false closes the connection.
func (s *ldapSession) handle(id int64, op berNode, controls []berNode) bool {
	switch op.tag {
	case opBindRequest:
		return s.bind(id, op)
	case opUnbindRequest:
		s.d.log.Info("unbind", "dn", s.bound, "remote", s.remote)
		return false
	case opSearchRequest:
		return s.search(id, op, controls)
	case opAbandonRequest:
		return true
	case opExtendedReq:
		name := ""
		if len(op.kids) > 0 && op.kids[0].is(berContext, 0) {
			name = op.kids[0].str()
		}
		s.d.log.Info("extended", "oid", name, "remote", s.remote)
		switch name {
		case oidWhoAmI:
			who := ""
			if s.bound != "" {
				who = "dn:" + s.bound
			}
			return s.send(id, ldapResult(opExtendedResp, ldapSuccess, "", "", berTLV(berContext, false, 11, []byte(who))))
		case oidStartTLS:
			return s.send(id, ldapResult(opExtendedResp, ldapUnavailable, "", "StartTLS is not offered in the lab"))
		}
		return s.send(id, ldapResult(opExtendedResp, ldapProtocolError, "", "unsupported extended operation"))
	case opModifyRequest, opAddRequest, opDelRequest, opModDNRequest, opCompareRequest:
		s.d.log.Info("write refused", "op", op.tag, "dn", s.bound, "remote", s.remote)
		return s.send(id, ldapResult(op.tag+1, ldapUnwillingToPerform, "", "the lab directory is read-only"))
	}
	return s.send(id, ldapResult(opExtendedResp, ldapProtocolError, "", "unknown operation"))
}

func (s *ldapSession) bind(id int64, op berNode) bool {
	if len(op.kids) < 3 {
		return s.send(id, ldapResult(opBindResponse, ldapProtocolError, "", "malformed bind"))
	}
	version, _ := op.kids[0].int()
	dn := op.kids[1].str()
	auth := op.kids[2]
	s.bound = ""
	result := func(code int, diag string) bool {
		s.d.log.Info("bind", "dn", dn, "ok", code == ldapSuccess, "code", code, "remote", s.remote)
		return s.send(id, ldapResult(opBindResponse, code, "", diag))
	}
	switch {
	case version != 3 && version != 2:
		return result(ldapProtocolError, "version 3 only")
	case !auth.is(berContext, 0):
		return result(ldapAuthMethodUnsupported, "simple bind only")
	case dn == "" && len(auth.data) == 0:
		return result(ldapSuccess, "") // anonymous
	case len(auth.data) == 0:
		return result(ldapUnwillingToPerform, "unauthenticated bind (DN with no password) is not allowed")
	}
	e := s.d.byDN[normDN(dn)]
	if e == nil || e.password == "" || e.password != string(auth.data) {
		return result(ldapInvalidCredentials, "")
	}
	s.bound = e.norm
	return result(ldapSuccess, "")
}

func (s *ldapSession) search(id int64, op berNode, controls []berNode) bool {
	done := func(code int, matched, diag string, ctl ...[]byte) bool {
		return s.send(id, ldapResult(opSearchDone, code, matched, diag), ctl...)
	}
	if len(op.kids) < 8 {
		return done(ldapProtocolError, "", "malformed search")
	}
	base := normDN(op.kids[0].str())
	scope, _ := op.kids[1].int()
	sizeLimit, _ := op.kids[3].int()
	typesOnly := len(op.kids[5].data) == 1 && op.kids[5].data[0] != 0
	filter := op.kids[6]
	var want []string
	for _, a := range op.kids[7].kids {
		want = append(want, a.str())
	}
	var ctl [][]byte
	for _, c := range controls {
		if len(c.kids) > 0 && c.kids[0].str() == oidPaging {
			// Everything fits in one page: answer with an empty cookie.
			ctl = append(ctl, berSeq(berOctets(oidPaging), berOctets(string(berSeq(berInt(0), berOctets(""))))))
		} else if len(c.kids) > 1 && c.kids[1].is(berUniversal, tagBoolean) && len(c.kids[1].data) == 1 && c.kids[1].data[0] != 0 {
			return done(12, "", "unavailable critical extension "+c.kids[0].str()) // unavailableCriticalExtension
		}
	}
	var results []*ldapEntry
	if base == "" && scope == 0 {
		results = []*ldapEntry{s.d.rootDSE()}
	} else {
		if s.bound == "" && !s.d.anon {
			s.d.log.Info("search refused", "base", base, "remote", s.remote)
			return done(ldapInsufficientAccess, "", "bind first")
		}
		if s.d.byDN[base] == nil {
			return done(ldapNoSuchObject, s.d.base, "")
		}
		for _, e := range s.d.entries {
			if inScope(e.norm, base, scope) {
				ok, err := matchFilter(e, filter, 0)
				if err != nil {
					return done(ldapProtocolError, "", err.Error())
				}
				if ok {
					results = append(results, e)
				}
			}
		}
	}
	code := ldapSuccess
	if sizeLimit > 0 && int64(len(results)) > sizeLimit {
		results = results[:sizeLimit]
		code = 4 // sizeLimitExceeded
	}
	for _, e := range results {
		if !s.send(id, entryPDU(e, want, typesOnly)) {
			return false
		}
	}
	s.d.log.Info("search", "base", base, "scope", scope, "filter", filterString(filter), "entries", len(results), "dn", s.bound, "remote", s.remote)
	return done(code, "", "", ctl...)
}

func (d *directory) rootDSE() *ldapEntry {
	return &ldapEntry{attrs: []ldapAttr{
		{"objectClass", []string{"top"}},
		{"namingContexts", []string{d.entries[0].dn}},
		{"supportedLDAPVersion", []string{"3"}},
		{"supportedControl", []string{oidPaging}},
		{"supportedExtension", []string{oidWhoAmI}},
		{"vendorName", []string{"Bulkhead lab"}},
	}}
}

func inScope(dn, base string, scope int64) bool {
	switch scope {
	case 0:
		return dn == base
	case 1:
		_, parent, ok := strings.Cut(dn, ",")
		return ok && parent == base
	}
	return dn == base || strings.HasSuffix(dn, ","+base) || base == ""
}

func entryPDU(e *ldapEntry, want []string, typesOnly bool) []byte {
	all := len(want) == 0 || slices.Contains(want, "*")
	var attrs [][]byte
	for _, a := range e.attrs {
		if !all && !containsFold(want, a.name) {
			continue
		}
		var vals [][]byte
		if !typesOnly {
			for _, v := range a.vals {
				vals = append(vals, berOctets(v))
			}
		}
		attrs = append(attrs, berSeq(berOctets(a.name), berSetOf(vals...)))
	}
	return berCons(berApplication, opSearchEntry, berOctets(e.dn), berSeq(attrs...))
}

var dnValued = map[string]bool{"member": true, "memberof": true, "uniquemember": true}

func equalValue(attr, v, want string) bool {
	if dnValued[strings.ToLower(attr)] {
		return normDN(v) == normDN(want)
	}
	return strings.EqualFold(v, want)
}

// matchFilter evaluates an RFC 4511 filter on e.
func matchFilter(e *ldapEntry, f berNode, depth int) (bool, error) {
	if depth > 16 || f.class != berContext {
		return false, fmt.Errorf("bad filter")
	}
	attrVals := func() (string, string, []string, error) {
		if len(f.kids) != 2 {
			return "", "", nil, fmt.Errorf("bad filter")
		}
		a := f.kids[0].str()
		return a, f.kids[1].str(), e.get(a), nil
	}
	switch f.tag {
	case 0, 1: // and, or
		for _, k := range f.kids {
			ok, err := matchFilter(e, k, depth+1)
			if err != nil {
				return false, err
			}
			if f.tag == 0 && !ok {
				return false, nil
			}
			if f.tag == 1 && ok {
				return true, nil
			}
		}
		return f.tag == 0, nil
	case 2: // not
		if len(f.kids) != 1 {
			return false, fmt.Errorf("bad not filter")
		}
		ok, err := matchFilter(e, f.kids[0], depth+1)
		return !ok, err
	case 3, 8: // equalityMatch, approxMatch
		a, want, vals, err := attrVals()
		for _, v := range vals {
			if equalValue(a, v, want) {
				return true, err
			}
		}
		return false, err
	case 5, 6: // greaterOrEqual, lessOrEqual
		_, want, vals, err := attrVals()
		for _, v := range vals {
			c := strings.Compare(strings.ToLower(v), strings.ToLower(want))
			if f.tag == 5 && c >= 0 || f.tag == 6 && c <= 0 {
				return true, err
			}
		}
		return false, err
	case 7: // present
		return strings.EqualFold(f.str(), "objectClass") || e.get(f.str()) != nil, nil
	case 4: // substrings
		if len(f.kids) != 2 {
			return false, fmt.Errorf("bad substrings filter")
		}
		for _, v := range e.get(f.kids[0].str()) {
			if matchSubstrings(strings.ToLower(v), f.kids[1].kids) {
				return true, nil
			}
		}
		return false, nil
	case 9: // extensibleMatch: not supported, matches nothing
		return false, nil
	}
	return false, fmt.Errorf("unknown filter choice %d", f.tag)
}

func matchSubstrings(v string, parts []berNode) bool {
	for i, p := range parts {
		s := strings.ToLower(p.str())
		switch p.tag {
		case 0:
			if !strings.HasPrefix(v, s) {
				return false
			}
			v = v[len(s):]
		case 1:
			j := strings.Index(v, s)
			if j < 0 {
				return false
			}
			v = v[j+len(s):]
		case 2:
			return i == len(parts)-1 && strings.HasSuffix(v, s)
		}
	}
	return true
}

// filterString renders a filter for logs, in RFC 4515 form.
func filterString(f berNode) string {
	var b strings.Builder
	var walk func(f berNode, depth int)
	walk = func(f berNode, depth int) {
		if depth > 16 {
			b.WriteString("...")
			return
		}
		b.WriteByte('(')
		switch f.tag {
		case 0, 1, 2:
			b.WriteByte("&|!"[f.tag])
			for _, k := range f.kids {
				walk(k, depth+1)
			}
		case 3, 5, 6, 8:
			if len(f.kids) == 2 {
				b.WriteString(f.kids[0].str() + [...]string{3: "=", 5: ">=", 6: "<=", 8: "~="}[f.tag] + ldap.EscapeFilter(f.kids[1].str()))
			}
		case 7:
			b.WriteString(f.str() + "=*")
		case 4:
			if len(f.kids) == 2 {
				b.WriteString(f.kids[0].str() + "=")
				parts := f.kids[1].kids
				if len(parts) == 0 || parts[0].tag != 0 {
					b.WriteByte('*')
				}
				for _, p := range parts {
					b.WriteString(ldap.EscapeFilter(p.str()))
					if p.tag != 2 {
						b.WriteByte('*')
					}
				}
			}
		default:
			b.WriteString("?")
		}
		b.WriteByte(')')
	}
	walk(f, 0)
	return b.String()
}

// LDAPClientConfig binds to the directory and searches it ("ldap-client"):
// an application reading users and groups, as an identity sync does.
type LDAPClientConfig struct {
	Env  `yaml:"-"`
	Pace `yaml:",inline"`
	// Target is the directory, "HOST:PORT".
	Target   string `json:"target" yaml:"target"`
	BindDN   string `json:"bindDN" yaml:"bindDN"`
	Password string `json:"password" yaml:"password"`
	BaseDN   string `json:"baseDN" yaml:"baseDN"`
	// Filters are searched in turn, one per round; default people and groups.
	Filters []string `json:"filters,omitempty" yaml:"filters"`
	// Paged uses the paged-results control, as Active Directory clients do.
	Paged bool `json:"paged,omitempty" yaml:"paged"`
}

// SetDefaults paces a search every 30s.
func (c *LDAPClientConfig) SetDefaults() {
	c.Pace.setDefaults(30 * time.Second)
	if c.BaseDN == "" {
		c.BaseDN = "dc=lab,dc=test"
	}
	if len(c.Filters) == 0 {
		c.Filters = []string{"(objectClass=inetOrgPerson)", "(objectClass=groupOfNames)"}
	}
}

// Validate checks the configuration.
func (c LDAPClientConfig) Validate() error {
	errs := []error{c.Pace.validate(), checkHostPort("target", c.Target)}
	if _, err := ldap.ParseDN(c.BaseDN); err != nil || c.BaseDN == "" {
		errs = append(errs, fieldErr("baseDN", "%q is not a DN", c.BaseDN))
	}
	if len(c.Filters) == 0 {
		errs = append(errs, fieldErr("filters", "at least one filter"))
	}
	for i, f := range c.Filters {
		if _, err := ldap.CompileFilter(f); err != nil {
			errs = append(errs, fieldErr(fmt.Sprintf("filters[%d]", i), "%q: %v", f, err))
		}
	}
	return joinNonNil(errs)
}

// Refs returns the target.
func (c *LDAPClientConfig) Refs() []*string { return []*string{&c.Target} }

// RunLDAPClient binds and runs one search per round.
func RunLDAPClient(ctx context.Context, cfg LDAPClientConfig) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("ldap-client: %w", err)
	}
	log := cfg.log().With("client", "ldap-client")
	return cfg.Pace.loop(ctx, func(ctx context.Context, n int) {
		filter := cfg.Filters[(n-1)%len(cfg.Filters)]
		entries, err := ldapSearch(ctx, &cfg.Env, cfg.Target, cfg.BindDN, cfg.Password, cfg.BaseDN, filter, cfg.Paged, cfg.timeout())
		if err != nil {
			failed(ctx, log, "search", "target", cfg.Target, "bind", cfg.BindDN, "filter", filter, "err", err)
			return
		}
		log.Info("search", "target", cfg.Target, "bind", cfg.BindDN, "filter", filter, "entries", len(entries))
	})
}

// ldapSearch binds as dn and searches the subtree of base with filter.
func ldapSearch(ctx context.Context, env *Env, addr, dn, pw, base, filter string, paged bool, timeout time.Duration) ([]*ldap.Entry, error) {
	c, err := env.dialer(timeout).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	l := ldap.NewConn(c, false)
	l.Start()
	defer l.Close()
	l.SetTimeout(timeout)
	if err := l.Bind(dn, pw); err != nil {
		return nil, err
	}
	req := ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, int(timeout/time.Second), false, filter, nil, nil)
	var res *ldap.SearchResult
	if paged {
		res, err = l.SearchWithPaging(req, 100)
	} else {
		res, err = l.Search(req)
	}
	if err != nil {
		return nil, err
	}
	l.Unbind()
	return res.Entries, nil
}
