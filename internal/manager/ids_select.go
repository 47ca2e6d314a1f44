package manager

// Which IDS signatures inspect which workload (issue 8). Pure: the
// signatures, the profiles and what the inventory says each workload runs
// go in; per workload, the signatures, the mode and, on request, why each
// signature was left out come back.
//
// Workload-aware filtering drops a signature only on evidence: what the
// workload is known to serve (ports and applications it answered on in
// recent flow records, and its tier/role tags) and its operating system
// (spec.os, tag or fact "os"). A signature that targets a server role
// (attack_target Web_Server, SQL_Server, DNS_Server, ...; or, without
// attack_target, an application protocol or a server variable on the
// attacked side of the header) is dropped for a workload whose roles are
// known and do not include it; one that names only products of another
// OS (affected_product Windows_*, IIS on a Linux workload) or of roles the
// workload does not have is dropped; one aimed at a server on ports the
// workload was not seen serving is dropped when its ports are known from
// flows. Client-side signatures, and everything for a workload the
// inventory knows nothing about, stay: missing knowledge never hides an
// attack.

import (
	"fmt"
	"slices"
	"strings"

	"github.com/bulkhead/bulkhead/internal/ids/rules"
	"github.com/bulkhead/bulkhead/internal/policy"
)

// Server roles a workload can be known to play.
const (
	roleWeb  = "web"
	roleDB   = "db"
	roleDNS  = "dns"
	roleSMTP = "smtp"
	roleSSH  = "ssh"
	roleFTP  = "ftp"
	roleSMB  = "smb"
	roleTLS  = "tls"
	roleDir  = "directory" // LDAP, Kerberos: domain controllers
	roleRDP  = "rdp"
	roleAny  = "server" // serves anything at all
)

// idsSig is one signature with what selection reads from it, derived once
// when its set is loaded.
type idsSig struct {
	rule *rules.Rule
	set  string // the set's name
	// label is "name@version" of its set.
	label string

	classtype string // lower case
	metadata  map[string][]string
	cves      []string // "CVE-2021-44228"
	// serverSide: the header's attacked side is a server at home (the
	// destination is $HOME_NET or a $*_SERVERS variable and the rule looks
	// at the request direction, or the mirror image for to_client).
	serverSide bool
	// roles the signature needs the workload to play (any of them); nil:
	// no role needed. why says where the need comes from.
	roles   []string
	rolesOf string
	// osOnly / rolesOnly per affected product: the product list fits a
	// workload when one product fits (nil lists: no product named).
	products []product
	// osTarget: attack_target names only devices that do not run a
	// general-purpose OS (Networking_Equipment, IoT).
	deviceOnly bool
}

type product struct {
	name string
	os   string // "windows", "linux", "macos", or "" for any
	role string // a server role or ""
}

// newIDSSig derives the selection facts of a rule.
func newIDSSig(r *rules.Rule, set, label string) *idsSig {
	s := &idsSig{rule: r, set: set, label: label, classtype: strings.ToLower(r.Classtype), metadata: map[string][]string{}}
	for k, vs := range r.Metadata {
		k = strings.ToLower(k)
		for _, v := range vs {
			s.metadata[k] = append(s.metadata[k], strings.ToLower(strings.TrimSpace(v)))
		}
	}
	for _, ref := range r.References {
		if strings.EqualFold(ref.System, "cve") {
			s.cves = append(s.cves, normalizeCVE(ref.ID))
		}
	}
	for _, v := range s.metadata["cve"] {
		s.cves = append(s.cves, normalizeCVE(v))
	}
	slices.Sort(s.cves)
	s.cves = slices.Compact(s.cves)

	src, dst := headerAddrs(r.Raw)
	toClient := r.Flow.ToClient && !r.Flow.ToServer
	attacked := dst
	if toClient {
		attacked = src
	}
	serverVar := serverVarRole(attacked)
	s.serverSide = !r.Bidirectional && (serverVar != "" || isHomeVar(attacked))

	// Roles: attack_target first; without it, the protocol or the server
	// variable of the attacked side.
	if ts := s.metadata["attack_target"]; len(ts) > 0 {
		need, device, any := []string{}, true, false
		for _, t := range ts {
			switch t {
			case "web_server":
				need = append(need, roleWeb)
			case "sql_server", "database_server":
				need = append(need, roleDB)
			case "dns_server":
				need = append(need, roleDNS)
			case "smtp_server", "mail_server":
				need = append(need, roleSMTP)
			case "ftp_server":
				need = append(need, roleFTP)
			case "server":
				need = append(need, roleAny)
			default:
				any = true
			}
			if t != "networking_equipment" && t != "iot" {
				device = false
			}
		}
		if !any {
			s.roles, s.rolesOf = need, "attack_target "+strings.Join(r.Metadata["attack_target"], ",")
		}
		s.deviceOnly = device
	} else if s.serverSide && !toClient {
		if role := protoRole(r.Proto); role != "" {
			s.roles, s.rolesOf = []string{role}, "protocol "+ruleProtoName(r.Proto)+" to a server"
			if role == roleTLS {
				s.roles = []string{roleTLS, roleWeb}
			}
		} else if serverVar != "" {
			s.roles, s.rolesOf = []string{serverVar}, "destination "+attacked
		}
	}
	for _, p := range r.Metadata["affected_product"] {
		s.products = append(s.products, classifyProduct(p))
	}
	return s
}

func normalizeCVE(s string) string {
	s = strings.ToUpper(strings.TrimSpace(s))
	s = strings.ReplaceAll(s, "_", "-")
	if !strings.HasPrefix(s, "CVE-") {
		s = "CVE-" + s
	}
	return s
}

// headerAddrs returns the source and destination address tokens of a rule
// as written ("$HOME_NET", "any", "[10.0.0.0/8]").
func headerAddrs(raw string) (src, dst string) {
	i := strings.IndexByte(raw, '(')
	if i < 0 {
		return "", ""
	}
	f := strings.Fields(raw[:i])
	if len(f) != 7 {
		return "", ""
	}
	return f[2], f[5]
}

func isHomeVar(tok string) bool { return tok == "$HOME_NET" }

func serverVarRole(tok string) string {
	switch tok {
	case "$HTTP_SERVERS":
		return roleWeb
	case "$SQL_SERVERS":
		return roleDB
	case "$DNS_SERVERS":
		return roleDNS
	case "$SMTP_SERVERS":
		return roleSMTP
	case "$DC_SERVERS":
		return roleDir
	case "$TELNET_SERVERS":
		return roleAny
	}
	return ""
}

func protoRole(p rules.Proto) string {
	switch p {
	case rules.ProtoHTTP:
		return roleWeb
	case rules.ProtoTLS:
		return roleTLS
	case rules.ProtoDNS:
		return roleDNS
	case rules.ProtoSSH:
		return roleSSH
	case rules.ProtoSMTP:
		return roleSMTP
	case rules.ProtoFTP:
		return roleFTP
	case rules.ProtoSMB:
		return roleSMB
	}
	return ""
}

func ruleProtoName(p rules.Proto) string {
	return map[rules.Proto]string{rules.ProtoIP: "ip", rules.ProtoTCP: "tcp", rules.ProtoUDP: "udp", rules.ProtoICMP: "icmp",
		rules.ProtoHTTP: "http", rules.ProtoTLS: "tls", rules.ProtoDNS: "dns", rules.ProtoSSH: "ssh", rules.ProtoSMTP: "smtp",
		rules.ProtoFTP: "ftp", rules.ProtoSMB: "smb"}[p]
}

func ruleActionName(a rules.Action) string {
	return map[rules.Action]string{rules.ActionAlert: "alert", rules.ActionDrop: "drop", rules.ActionReject: "reject", rules.ActionPass: "pass"}[a]
}

// Words of affected_product values, lower case, that bind a product to an
// OS or a server role. Checked as substrings of the value, in order.
var (
	productOS = []struct{ word, os string }{
		{"windows", "windows"}, {"microsoft_iis", "windows"}, {"iis", "windows"}, {"microsoft_exchange", "windows"},
		{"sharepoint", "windows"}, {"microsoft_sql_server", "windows"}, {"internet_explorer", "windows"},
		{"linux", "linux"}, {"android", "android"}, {"mac_os", "macos"}, {"macos", "macos"}, {"apple_ios", "ios"},
	}
	productRole = []struct{ word, role string }{
		{"mysql", roleDB}, {"mariadb", roleDB}, {"postgres", roleDB}, {"sql_server", roleDB}, {"mssql", roleDB},
		{"oracle_database", roleDB}, {"redis", roleDB}, {"mongodb", roleDB}, {"elasticsearch", roleDB},
		{"couchdb", roleDB}, {"cassandra", roleDB}, {"memcached", roleDB},
		{"apache", roleWeb}, {"nginx", roleWeb}, {"iis", roleWeb}, {"php", roleWeb}, {"wordpress", roleWeb},
		{"joomla", roleWeb}, {"drupal", roleWeb}, {"tomcat", roleWeb}, {"jboss", roleWeb}, {"weblogic", roleWeb},
		{"websphere", roleWeb}, {"coldfusion", roleWeb}, {"web_server", roleWeb}, {"confluence", roleWeb},
		{"jira", roleWeb}, {"jenkins", roleWeb}, {"gitlab", roleWeb}, {"magento", roleWeb}, {"struts", roleWeb},
		{"sharepoint", roleWeb}, {"vbulletin", roleWeb},
		{"exim", roleSMTP}, {"postfix", roleSMTP}, {"sendmail", roleSMTP}, {"exchange", roleSMTP},
		{"openssh", roleSSH}, {"bind", roleDNS},
	}
)

func classifyProduct(v string) product {
	l := strings.ToLower(strings.TrimSpace(v))
	p := product{name: v}
	if l == "oracle" {
		p.role = roleDB
	}
	for _, x := range productOS {
		if strings.Contains(l, x.word) {
			p.os = x.os
			break
		}
	}
	for _, x := range productRole {
		if strings.Contains(l, x.word) {
			p.role = x.role
			break
		}
	}
	return p
}

// key names what selection reads of a workload besides its name: workloads
// with equal keys to which the same profiles apply get the same choice.
func (w *idsWorkload) key() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%v|", w.OS, w.RolesKnown)
	roles := make([]string, 0, len(w.Roles))
	for r := range w.Roles {
		roles = append(roles, r)
	}
	slices.Sort(roles)
	fmt.Fprintf(&b, "%v|%v|%v", roles, w.Served == nil, w.Served)
	return b.String()
}

// idsWorkload is what the inventory says a workload runs.
type idsWorkload struct {
	Name, Host, Interface string
	// OS is "windows", "linux", "macos", ... or "" when unknown.
	OS string
	// Roles are the server roles it is known to play; RolesKnown says
	// whether anything is known (else nothing is filtered by role).
	Roles      map[string]bool
	RolesKnown bool
	// Served are the transport ports it answered on recently (from flow
	// records); nil when no flow says (then ports filter nothing).
	Served []servedPort
	// rolesFrom says where the roles come from, for explanations.
	rolesFrom string
}

// servedPort is a port a workload answered on, and the application the
// data plane identified there ("" if none).
type servedPort struct {
	Proto uint8
	Port  uint16
	App   string
}

// workloadFacts reads what the inventory and the served summary say about
// a workload.
func workloadFacts(w *policy.Workload, served []servedPort) *idsWorkload {
	iw := &idsWorkload{Name: w.Metadata.Name, Host: w.Spec.Host, Interface: w.Spec.Interface, Roles: map[string]bool{}}
	for _, v := range []string{w.Spec.OS, w.Spec.Tags["os"], w.Spec.Facts["os"], w.Spec.Facts["guest_os"], w.Spec.Facts["guestOS"]} {
		if iw.OS = normalizeOS(v); iw.OS != "" {
			break
		}
	}
	var from []string
	for _, key := range []string{"tier", "role"} {
		if r := tagRole(w.Spec.Tags[key]); r != "" {
			iw.Roles[r] = true
			iw.Roles[roleAny] = true
			from = append(from, fmt.Sprintf("tag %s=%s", key, w.Spec.Tags[key]))
		}
	}
	if len(served) > 0 {
		iw.Served = served
		for _, sp := range served {
			iw.Roles[roleAny] = true
			for _, r := range portRoles(sp) {
				iw.Roles[r] = true
			}
		}
		from = append(from, fmt.Sprintf("%d served ports in flow records", len(served)))
	}
	iw.RolesKnown = len(iw.Roles) > 0
	iw.rolesFrom = strings.Join(from, ", ")
	return iw
}

func normalizeOS(v string) string {
	l := strings.ToLower(v)
	switch {
	case l == "":
		return ""
	case strings.Contains(l, "windows"):
		return "windows"
	case strings.Contains(l, "darwin"), strings.Contains(l, "macos"), strings.Contains(l, "mac os"):
		return "macos"
	}
	for _, w := range []string{"linux", "ubuntu", "debian", "centos", "rhel", "red hat", "fedora", "suse", "alpine", "rocky", "alma", "amazon"} {
		if strings.Contains(l, w) {
			return "linux"
		}
	}
	return ""
}

// tagRole maps a tier or role tag value to a server role.
func tagRole(v string) string {
	switch strings.ToLower(v) {
	case "web", "www", "frontend", "http", "api", "lb", "proxy":
		return roleWeb
	case "db", "database", "sql", "postgres", "postgresql", "mysql", "data", "cache", "redis", "mongodb":
		return roleDB
	case "dns":
		return roleDNS
	case "mail", "smtp":
		return roleSMTP
	case "dc", "ldap", "directory":
		return roleDir
	}
	return ""
}

// portRoles maps a served port (and its identified application) to roles.
func portRoles(sp servedPort) []string {
	switch sp.App {
	case "APP_HTTP", "APP_HTTP2":
		return []string{roleWeb}
	case "APP_HTTPS":
		return []string{roleWeb, roleTLS}
	case "APP_TLS":
		return []string{roleTLS}
	case "APP_MYSQL", "APP_POSTGRES", "APP_REDIS", "APP_MONGODB":
		return []string{roleDB}
	case "APP_DNS":
		return []string{roleDNS}
	case "APP_SMTP":
		return []string{roleSMTP}
	case "APP_SSH":
		return []string{roleSSH}
	case "APP_FTP":
		return []string{roleFTP}
	case "APP_SMB":
		return []string{roleSMB}
	case "APP_LDAP", "APP_KERBEROS":
		return []string{roleDir}
	case "APP_RDP":
		return []string{roleRDP}
	}
	switch sp.Port {
	case 80, 8000, 8008, 8080, 8081, 8088, 8888:
		return []string{roleWeb}
	case 443, 8443:
		return []string{roleWeb, roleTLS}
	case 3306, 5432, 1433, 1521, 6379, 27017, 9042, 9200, 5984, 11211:
		return []string{roleDB}
	case 53:
		return []string{roleDNS}
	case 25, 465, 587:
		return []string{roleSMTP}
	case 22:
		return []string{roleSSH}
	case 21:
		return []string{roleFTP}
	case 139, 445:
		return []string{roleSMB}
	case 88, 389, 636:
		return []string{roleDir}
	case 3389:
		return []string{roleRDP}
	}
	return nil
}

// awareReason returns why the workload-aware filter leaves sig out of w,
// or "" when it stays.
func awareReason(sig *idsSig, w *idsWorkload) string {
	if !awareExcludes(sig, w) {
		return ""
	}
	if sig.deviceOnly && w.OS != "" {
		return fmt.Sprintf("attack_target %s: the workload runs %s", strings.Join(sig.rule.Metadata["attack_target"], ","), w.OS)
	}
	if w.RolesKnown && sig.roles != nil && !slices.ContainsFunc(sig.roles, func(r string) bool { return w.Roles[r] }) {
		return fmt.Sprintf("%s needs a %s server; the workload is known as %s (%s)", sig.rolesOf, strings.Join(sig.roles, "/"), roleList(w), w.rolesFrom)
	}
	if len(sig.products) > 0 && !slices.ContainsFunc(sig.products, func(p product) bool { return productFits(p, w) }) {
		names := make([]string, len(sig.products))
		for i, p := range sig.products {
			names[i] = p.name
		}
		what := "OS " + cmpOr(w.OS, "unknown")
		if w.RolesKnown {
			what += ", roles " + roleList(w)
		}
		return fmt.Sprintf("affected_product %s fits none of the workload's facts (%s)", strings.Join(names, ","), what)
	}
	if sig.serverSide && w.Served != nil && sig.rule.DstPorts != nil && !sig.rule.DstPorts.Any && !servesAny(w, sig) {
		return fmt.Sprintf("aimed at a server on ports %s; the workload was seen serving only %s", portsOf(sig.rule), servedList(w))
	}
	return ""
}

// awareExcludes is awareReason without the words, for the hot path: a
// host's selection runs it for every signature and workload.
func awareExcludes(sig *idsSig, w *idsWorkload) bool {
	return sig.deviceOnly && w.OS != "" ||
		w.RolesKnown && sig.roles != nil && !slices.ContainsFunc(sig.roles, func(r string) bool { return w.Roles[r] }) ||
		len(sig.products) > 0 && !slices.ContainsFunc(sig.products, func(p product) bool { return productFits(p, w) }) ||
		sig.serverSide && w.Served != nil && sig.rule.DstPorts != nil && !sig.rule.DstPorts.Any && !servesAny(w, sig)
}

func productFits(p product, w *idsWorkload) bool {
	if p.os != "" && w.OS != "" && p.os != w.OS {
		return false
	}
	if p.role != "" && w.RolesKnown && !w.Roles[p.role] {
		return false
	}
	return true
}

func servesAny(w *idsWorkload, sig *idsSig) bool {
	r := sig.rule
	for _, sp := range w.Served {
		switch r.Proto {
		case rules.ProtoTCP, rules.ProtoHTTP, rules.ProtoTLS, rules.ProtoSSH, rules.ProtoSMTP, rules.ProtoFTP, rules.ProtoSMB:
			if sp.Proto != 6 {
				continue
			}
		case rules.ProtoUDP:
			if sp.Proto != 17 {
				continue
			}
		}
		if r.DstPorts.Contains(sp.Port) {
			return true
		}
	}
	return false
}

func roleList(w *idsWorkload) string {
	var out []string
	for r := range w.Roles {
		if r != roleAny {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	if len(out) == 0 {
		return "a server of no known kind"
	}
	return strings.Join(out, "+")
}

func servedList(w *idsWorkload) string {
	var out []string
	for _, sp := range w.Served {
		p := "tcp"
		if sp.Proto == 17 {
			p = "udp"
		}
		out = append(out, fmt.Sprintf("%s/%d", p, sp.Port))
	}
	if len(out) > 8 {
		out = append(out[:8], "...")
	}
	return strings.Join(out, ",")
}

func portsOf(r *rules.Rule) string {
	i := strings.IndexByte(r.Raw, '(')
	if i > 0 {
		if f := strings.Fields(r.Raw[:i]); len(f) == 7 {
			return f[6]
		}
	}
	return "?"
}

// idsFilter is an IDSProfile's signature filter, compiled.
type idsFilter struct {
	maxSeverity int
	classtypes  map[string]bool
	exclClass   map[string]bool
	metadata    map[string]map[string]bool
	metaKeys    []string
	cves        map[string]bool
	sids        map[uint32]bool
	exclSIDs    map[uint32]bool
	sets        map[string]bool // nil: every set
}

func lowerSet(vs []string) map[string]bool {
	if len(vs) == 0 {
		return nil
	}
	m := make(map[string]bool, len(vs))
	for _, v := range vs {
		m[strings.ToLower(strings.TrimSpace(v))] = true
	}
	return m
}

func compileFilter(f policy.IDSSignatureFilter) *idsFilter {
	c := &idsFilter{maxSeverity: f.MaxSeverity, classtypes: lowerSet(f.Classtypes), exclClass: lowerSet(f.ExcludeClasstypes),
		sids: map[uint32]bool{}, exclSIDs: map[uint32]bool{}}
	for k, vs := range f.Metadata {
		k = strings.ToLower(k)
		c.metadata = idsMapPut(c.metadata, k, lowerSet(vs))
		c.metaKeys = append(c.metaKeys, k)
	}
	slices.Sort(c.metaKeys)
	if len(f.CVEs) > 0 {
		c.cves = map[string]bool{}
		for _, cve := range f.CVEs {
			c.cves[normalizeCVE(cve)] = true
		}
	}
	for _, s := range f.SIDs {
		c.sids[s] = true
	}
	for _, s := range f.ExcludeSIDs {
		c.exclSIDs[s] = true
	}
	if len(f.SignatureSets) > 0 {
		c.sets = map[string]bool{}
		for _, s := range f.SignatureSets {
			c.sets[s] = true
		}
	}
	return c
}

func idsMapPut[V any](m map[string]V, k string, v V) map[string]V {
	if m == nil {
		m = map[string]V{}
	}
	m[k] = v
	return m
}

// reason returns why the filter leaves sig out, or "". forced says the
// signature is in by sid, whatever else the filter or the workload-aware
// step say.
func (f *idsFilter) reason(sig *idsSig) (why string, forced bool) {
	sid := sig.rule.SID
	if f.exclSIDs[sid] {
		return "excludeSids", false
	}
	if f.sets != nil && !f.sets[sig.set] {
		return "signature set " + sig.set + " is not in signatureSets", false
	}
	if f.sids[sid] {
		return "", true
	}
	if f.maxSeverity > 0 && sig.rule.Priority > f.maxSeverity {
		return fmt.Sprintf("priority %d is above maxSeverity %d", sig.rule.Priority, f.maxSeverity), false
	}
	if f.classtypes != nil && !f.classtypes[sig.classtype] {
		return "classtype " + cmpOr(sig.classtype, "(none)") + " is not in classtypes", false
	}
	if f.exclClass[sig.classtype] {
		return "classtype " + sig.classtype + " is in excludeClasstypes", false
	}
	for _, k := range f.metaKeys {
		if !slices.ContainsFunc(sig.metadata[k], func(v string) bool { return f.metadata[k][v] }) {
			return "metadata " + k + " has none of the values asked for", false
		}
	}
	if f.cves != nil && !slices.ContainsFunc(sig.cves, func(c string) bool { return f.cves[c] }) {
		return "names none of the CVEs asked for", false
	}
	return "", false
}

// idsProfile is an IDSProfile ready for selection.
type idsProfile struct {
	name    string
	prevent bool
	// enforce is the prevent profile's action for the alert signatures it
	// chose (preventAction): 0 (as written: they only alert),
	// rules.ActionDrop or rules.ActionReject.
	enforce rules.Action
	aware   bool
	filter  *idsFilter
	// members are the workloads of its appliedTo groups; nil: every
	// workload.
	members map[string]bool
	// pass are the signatures the filter chose, in sid order (prefilter).
	pass []passed
}

type passed struct {
	sig    *idsSig
	forced bool // by sid: the workload-aware step does not apply
}

// prefilter runs the profile's filter over sigs once, for all workloads.
func (p *idsProfile) prefilter(sigs []*idsSig) {
	p.pass = p.pass[:0]
	for _, sig := range sigs {
		if why, forced := p.filter.reason(sig); why == "" {
			p.pass = append(p.pass, passed{sig, forced})
		}
	}
}

func (p *idsProfile) appliesTo(w string) bool { return p.members == nil || p.members[w] }

// idsChoice is the selection of one workload.
type idsChoice struct {
	Mode     string
	Profiles []string
	SIDs     []uint32
	Prevent  []uint32
	// Block and Reject are the alert signatures among Prevent that a
	// prevent profile's preventAction enforces as drop and as reject
	// (reject wins when two profiles differ).
	Block, Reject []uint32
	// By maps each chosen sid to the profiles that chose it.
	By map[uint32][]string
	// Left maps the sids a profile's filter chose but the workload-aware
	// step left out, per profile, to the reason (only with explain).
	Left map[uint32][]leftOut
}

type leftOut struct{ Profile, Reason string }

// selectSignatures chooses the signatures of one workload among those
// each profile's filter passed (prefilter).
func selectSignatures(w *idsWorkload, profiles []*idsProfile, explain bool) idsChoice {
	ch := idsChoice{Mode: policy.IDSModeDetect, By: map[uint32][]string{}}
	if explain {
		ch.Left = map[uint32][]leftOut{}
	}
	prevent := map[uint32]bool{}
	enforce := map[uint32]rules.Action{}
	for _, p := range profiles {
		if !p.appliesTo(w.Name) {
			continue
		}
		ch.Profiles = append(ch.Profiles, p.name)
		if p.prevent {
			ch.Mode = policy.IDSModePrevent
		}
		for _, ps := range p.pass {
			sig := ps.sig
			if !ps.forced && p.aware {
				if awareExcludes(sig, w) {
					if explain {
						ch.Left[sig.rule.SID] = append(ch.Left[sig.rule.SID], leftOut{p.name, awareReason(sig, w)})
					}
					continue
				}
			}
			sid := sig.rule.SID
			ch.By[sid] = append(ch.By[sid], p.name)
			if p.prevent {
				prevent[sid] = true
				if p.enforce != 0 && sig.rule.Action == rules.ActionAlert && enforce[sid] != rules.ActionReject {
					enforce[sid] = p.enforce
				}
			}
		}
	}
	for sid := range ch.By {
		ch.SIDs = append(ch.SIDs, sid)
		if prevent[sid] {
			ch.Prevent = append(ch.Prevent, sid)
		}
		switch enforce[sid] {
		case rules.ActionDrop:
			ch.Block = append(ch.Block, sid)
		case rules.ActionReject:
			ch.Reject = append(ch.Reject, sid)
		}
		delete(ch.Left, sid) // another profile took it
	}
	slices.Sort(ch.SIDs)
	slices.Sort(ch.Prevent)
	slices.Sort(ch.Block)
	slices.Sort(ch.Reject)
	slices.Sort(ch.Profiles)
	return ch
}
