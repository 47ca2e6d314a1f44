// Package policy is policy as written: the resource kinds users apply as YAML
// documents, their strict decoding and their validation, with errors that name
// the file, the document, the field and the reason.
package policy

import "sort"

// APIVersion is the only apiVersion this release accepts.
const APIVersion = "bulkhead.io/v1"

// Kind names a resource kind.
type Kind string

const (
	KindWorkload       Kind = "Workload"
	KindGroup          Kind = "Group"
	KindService        Kind = "Service"
	KindContextProfile Kind = "ContextProfile"
	KindPolicy         Kind = "Policy"
	KindDefaultRule    Kind = "DefaultRule"
	KindIDSProfile     Kind = "IDSProfile"
	KindIDSVariables   Kind = "IDSVariables"
)

// Kinds lists every kind in the order documents are shown and applied.
var Kinds = []Kind{KindWorkload, KindGroup, KindService, KindContextProfile, KindPolicy, KindDefaultRule, KindIDSProfile, KindIDSVariables}

// Revisioned reports whether a kind is policy (kept in numbered revisions) rather
// than inventory (Workload, which discovery changes all the time).
func (k Kind) Revisioned() bool { return k != KindWorkload }

// Metadata is what every resource carries besides its spec.
type Metadata struct {
	Name        string            `json:"name"`
	Description string            `json:"description,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
}

// Header is the kubectl-style envelope shared by all kinds.
type Header struct {
	APIVersion string   `json:"apiVersion"`
	Kind       Kind     `json:"kind"`
	Metadata   Metadata `json:"metadata"`
}

// Workload is one endpoint: a VM, container or bare-metal interface.
type Workload struct {
	Header `json:",inline"`
	Spec   WorkloadSpec `json:"spec"`
}

// WorkloadSpec holds inventory facts; most come from discovery, not YAML.
type WorkloadSpec struct {
	IPs       []string          `json:"ips"`
	Host      string            `json:"host,omitempty"`
	Interface string            `json:"interface,omitempty"`
	Tags      map[string]string `json:"tags,omitempty"`
	OS        string            `json:"os,omitempty"`
	Facts     map[string]string `json:"facts,omitempty"`
}

// Group selects endpoints. Membership is the union of every criterion given.
type Group struct {
	Header `json:",inline"`
	Spec   GroupSpec `json:"spec"`
}

// GroupSpec lists the criteria of a group.
type GroupSpec struct {
	// Match is a tag expression over workload tags, e.g.
	// app == "shop" && tier in ("web","api").
	Match string `json:"match,omitempty"`
	// IPs are addresses or CIDR prefixes, v4 or v6.
	IPs []string `json:"ips,omitempty"`
	// Groups nests other groups: their members are members of this one.
	Groups []string `json:"groups,omitempty"`
	// Users are user names; a connection made by one of them matches.
	Users []string `json:"users,omitempty"`
	// DirectoryGroups are directory (LDAP/AD) groups whose users match.
	DirectoryGroups []string `json:"directoryGroups,omitempty"`
	// FQDNs are destination names, wildcards allowed (*.example.com).
	FQDNs []string `json:"fqdns,omitempty"`
}

// Service is a set of protocols and ports.
type Service struct {
	Header `json:",inline"`
	Spec   ServiceSpec `json:"spec"`
}

// ServiceSpec lists port specs: "tcp/443", "udp/53", "tcp/8000-8100",
// "icmp/8", "icmp/3/4" (type/code), "icmp", "icmpv6/128", "tcp" (all ports), "any".
type ServiceSpec struct {
	Ports []string `json:"ports"`
}

// ContextProfile is L7 context a rule can require.
type ContextProfile struct {
	Header `json:",inline"`
	Spec   ContextProfileSpec `json:"spec"`
}

// ContextProfileSpec matches when any listed app matches, and (if FQDNs are
// given) the destination name matches one of them.
type ContextProfileSpec struct {
	Apps  []AppMatch `json:"apps,omitempty"`
	FQDNs []string   `json:"fqdns,omitempty"`
}

// AppMatch names an application identity and its attribute constraints.
type AppMatch struct {
	Name       string `json:"name"`                 // APP_TLS, APP_HTTPS, APP_SSH, APP_HTTP, APP_DNS...
	MinVersion string `json:"minVersion,omitempty"` // TLS: "1.0".."1.3"
	MaxVersion string `json:"maxVersion,omitempty"`
}

// Category fixes the order of policy sections.
type Category string

const (
	CategoryEmergency      Category = "Emergency"
	CategoryInfrastructure Category = "Infrastructure"
	CategoryEnvironment    Category = "Environment"
	CategoryApplication    Category = "Application"
)

// Categories in evaluation order.
var Categories = []Category{CategoryEmergency, CategoryInfrastructure, CategoryEnvironment, CategoryApplication}

// Rank is the position of a category in evaluation order, or -1.
func (c Category) Rank() int {
	for i, x := range Categories {
		if x == c {
			return i
		}
	}
	return -1
}

// Policy is one section of ordered rules.
type Policy struct {
	Header `json:",inline"`
	Spec   PolicySpec `json:"spec"`
}

// PolicySpec is a section. Sections of one category are evaluated by
// ascending Priority, then by name.
type PolicySpec struct {
	Category Category `json:"category"`
	Priority int      `json:"priority,omitempty"`
	// AppliedTo is the scope: groups whose workloads enforce these rules.
	// Empty means every workload.
	AppliedTo []string `json:"appliedTo,omitempty"`
	Rules     []Rule   `json:"rules"`
	// L7FailMode says what the data plane does with the payload of a
	// connection that one of these rules left waiting for an application
	// verdict while the host's queue reader is not running: closed (the
	// default) drops it, open lets it through. A host's single queue
	// fails open only when every section with L7 rules in its span says
	// open (the strictest wins).
	L7FailMode FailMode `json:"l7FailMode,omitempty"`
}

// FailMode is what an enforcement point does when it cannot decide.
type FailMode string

const (
	FailClosed FailMode = "closed"
	FailOpen   FailMode = "open"
)

// Action is what a matching rule does.
type Action string

const (
	ActionAllow  Action = "allow"
	ActionDrop   Action = "drop"
	ActionReject Action = "reject"
)

// Direction says at which enforcement point a rule applies, seen from the
// applied-to workload: in (ingress), out (egress) or both.
type Direction string

const (
	DirectionIn    Direction = "in"
	DirectionOut   Direction = "out"
	DirectionInOut Direction = "inout"
)

// Mode says whether a rule is enforced or only evaluated and counted.
type Mode string

const (
	ModeEnforce Mode = "enforce"
	ModeStaged  Mode = "staged"
)

// Rule is one ordered rule of a section.
type Rule struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Sources and Destinations hold group names or IP/CIDR literals; empty
	// means any.
	Sources      []string `json:"sources,omitempty"`
	Destinations []string `json:"destinations,omitempty"`
	// Services hold Service names or inline port specs ("tcp/443"); empty
	// means any.
	Services  []string  `json:"services,omitempty"`
	Profiles  []string  `json:"profiles,omitempty"`
	Action    Action    `json:"action"`
	Direction Direction `json:"direction,omitempty"` // default inout
	Log       bool      `json:"log,omitempty"`
	Mode      Mode      `json:"mode,omitempty"` // default enforce
}

// DefaultRule closes the rule table: what happens to a flow no rule matched.
// There is one, named "default".
type DefaultRule struct {
	Header `json:",inline"`
	Spec   DefaultRuleSpec `json:"spec"`
}

// DefaultRuleSpec is the action of the default rule.
type DefaultRuleSpec struct {
	Action Action `json:"action"`
	Log    bool   `json:"log,omitempty"`
}

// DefaultRuleName is the name of the only DefaultRule.
const DefaultRuleName = "default"

// DefaultRuleID is the rule id of the default rule in every revision.
const DefaultRuleID uint32 = 1

// RuleKey names a rule across revisions: "policy/rule".
func RuleKey(policy, rule string) string { return policy + "/" + rule }

// Set is a complete, consistent collection of resources: one revision's
// policy plus the inventory it is evaluated against.
type Set struct {
	Workloads       map[string]*Workload       `json:"workloads,omitempty"`
	Groups          map[string]*Group          `json:"groups,omitempty"`
	Services        map[string]*Service        `json:"services,omitempty"`
	ContextProfiles map[string]*ContextProfile `json:"contextProfiles,omitempty"`
	Policies        map[string]*Policy         `json:"policies,omitempty"`
	Default         *DefaultRule               `json:"default,omitempty"`
	// IDSProfiles and IDSVariables (at most one, "default") are the
	// intrusion detection policy (ids.go).
	IDSProfiles  map[string]*IDSProfile   `json:"idsProfiles,omitempty"`
	IDSVariables map[string]*IDSVariables `json:"idsVariables,omitempty"`
	// RuleIDs maps RuleKey to a numeric id that is stable across revisions
	// and never reused; it is what the data plane writes into the ct mark.
	RuleIDs map[string]uint32 `json:"ruleIDs,omitempty"`
}

// NewSet returns an empty set with the built-in default rule (allow, so
// that installing Bulkhead breaks nothing until a user says otherwise).
func NewSet() *Set {
	return &Set{
		Workloads:       map[string]*Workload{},
		Groups:          map[string]*Group{},
		Services:        map[string]*Service{},
		ContextProfiles: map[string]*ContextProfile{},
		Policies:        map[string]*Policy{},
		IDSProfiles:     map[string]*IDSProfile{},
		IDSVariables:    map[string]*IDSVariables{},
		Default: &DefaultRule{
			Header: Header{APIVersion: APIVersion, Kind: KindDefaultRule, Metadata: Metadata{Name: DefaultRuleName}},
			Spec:   DefaultRuleSpec{Action: ActionAllow},
		},
		RuleIDs: map[string]uint32{},
	}
}

// OrderedPolicies returns the sections in evaluation order: category, then
// priority, then name.
func (s *Set) OrderedPolicies() []*Policy {
	out := make([]*Policy, 0, len(s.Policies))
	for _, p := range s.Policies {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if ra, rb := a.Spec.Category.Rank(), b.Spec.Category.Rank(); ra != rb {
			return ra < rb
		}
		if a.Spec.Priority != b.Spec.Priority {
			return a.Spec.Priority < b.Spec.Priority
		}
		return a.Metadata.Name < b.Metadata.Name
	})
	return out
}

// Object is any resource kind; every kind embeds Header.
type Object interface {
	GetHeader() *Header
}

// GetHeader returns the envelope of a resource.
func (h *Header) GetHeader() *Header { return h }

var (
	_ Object = (*Workload)(nil)
	_ Object = (*Group)(nil)
	_ Object = (*Service)(nil)
	_ Object = (*ContextProfile)(nil)
	_ Object = (*Policy)(nil)
	_ Object = (*DefaultRule)(nil)
	_ Object = (*IDSProfile)(nil)
	_ Object = (*IDSVariables)(nil)
)
