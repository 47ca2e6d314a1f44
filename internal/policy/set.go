package policy

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
)

// ObjectKey names an object in a Set.
type ObjectKey struct {
	Kind Kind
	Name string
}

func (k ObjectKey) String() string { return fmt.Sprintf("%s %q", k.Kind, k.Name) }

// KeyOf returns the key of o, by its Go type and its name.
func KeyOf(o Object) ObjectKey { return ObjectKey{Kind: KindOf(o), Name: o.GetHeader().Metadata.Name} }

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

func (h Header) deepCopy() Header {
	h.Metadata.Labels = maps.Clone(h.Metadata.Labels)
	return h
}

// DeepCopy returns a copy of w that shares no memory with it.
func (w *Workload) DeepCopy() *Workload {
	if w == nil {
		return nil
	}
	c := *w
	c.Header = w.Header.deepCopy()
	c.Spec.IPs = slices.Clone(w.Spec.IPs)
	c.Spec.Tags = maps.Clone(w.Spec.Tags)
	c.Spec.Facts = maps.Clone(w.Spec.Facts)
	return &c
}

// DeepCopy returns a copy of g that shares no memory with it.
func (g *Group) DeepCopy() *Group {
	if g == nil {
		return nil
	}
	c := *g
	c.Header = g.Header.deepCopy()
	c.Spec.IPs = slices.Clone(g.Spec.IPs)
	c.Spec.Groups = slices.Clone(g.Spec.Groups)
	c.Spec.Users = slices.Clone(g.Spec.Users)
	c.Spec.DirectoryGroups = slices.Clone(g.Spec.DirectoryGroups)
	c.Spec.FQDNs = slices.Clone(g.Spec.FQDNs)
	return &c
}

// DeepCopy returns a copy of s that shares no memory with it.
func (s *Service) DeepCopy() *Service {
	if s == nil {
		return nil
	}
	c := *s
	c.Header = s.Header.deepCopy()
	c.Spec.Ports = slices.Clone(s.Spec.Ports)
	return &c
}

// DeepCopy returns a copy of p that shares no memory with it.
func (p *ContextProfile) DeepCopy() *ContextProfile {
	if p == nil {
		return nil
	}
	c := *p
	c.Header = p.Header.deepCopy()
	c.Spec.Apps = slices.Clone(p.Spec.Apps)
	c.Spec.FQDNs = slices.Clone(p.Spec.FQDNs)
	return &c
}

// DeepCopy returns a copy of r that shares no memory with it.
func (r Rule) DeepCopy() Rule {
	r.Sources = slices.Clone(r.Sources)
	r.Destinations = slices.Clone(r.Destinations)
	r.Services = slices.Clone(r.Services)
	r.Profiles = slices.Clone(r.Profiles)
	return r
}

// DeepCopy returns a copy of p that shares no memory with it.
func (p *Policy) DeepCopy() *Policy {
	if p == nil {
		return nil
	}
	c := *p
	c.Header = p.Header.deepCopy()
	c.Spec.AppliedTo = slices.Clone(p.Spec.AppliedTo)
	if p.Spec.Rules != nil {
		c.Spec.Rules = make([]Rule, len(p.Spec.Rules))
		for i, r := range p.Spec.Rules {
			c.Spec.Rules[i] = r.DeepCopy()
		}
	}
	return &c
}

// DeepCopy returns a copy of d that shares no memory with it.
func (d *DefaultRule) DeepCopy() *DefaultRule {
	if d == nil {
		return nil
	}
	c := *d
	c.Header = d.Header.deepCopy()
	return &c
}

// DeepCopyObject returns a copy of o that shares no memory with it.
func DeepCopyObject(o Object) Object {
	switch o := o.(type) {
	case *Workload:
		return o.DeepCopy()
	case *Group:
		return o.DeepCopy()
	case *Service:
		return o.DeepCopy()
	case *ContextProfile:
		return o.DeepCopy()
	case *Policy:
		return o.DeepCopy()
	case *DefaultRule:
		return o.DeepCopy()
	case *IDSProfile:
		return o.DeepCopy()
	case *IDSVariables:
		return o.DeepCopy()
	}
	panic(fmt.Sprintf("policy: DeepCopyObject of %T", o))
}

func cloneMap[T any](m map[string]*T, cp func(*T) *T) map[string]*T {
	out := make(map[string]*T, len(m))
	for k, v := range m {
		out[k] = cp(v)
	}
	return out
}

// Clone returns a deep copy of s: changing one never changes the other.
func (s *Set) Clone() *Set {
	if s == nil {
		return nil
	}
	return &Set{
		Workloads:       cloneMap(s.Workloads, (*Workload).DeepCopy),
		Groups:          cloneMap(s.Groups, (*Group).DeepCopy),
		Services:        cloneMap(s.Services, (*Service).DeepCopy),
		ContextProfiles: cloneMap(s.ContextProfiles, (*ContextProfile).DeepCopy),
		Policies:        cloneMap(s.Policies, (*Policy).DeepCopy),
		Default:         s.Default.DeepCopy(),
		IDSProfiles:     cloneMap(s.IDSProfiles, (*IDSProfile).DeepCopy),
		IDSVariables:    cloneMap(s.IDSVariables, (*IDSVariables).DeepCopy),
		RuleIDs:         maps.Clone(s.RuleIDs),
	}
}

// Put adds o to the set, replacing the object of the same kind and name; a
// DefaultRule replaces Default. The set keeps o itself, not a copy. Put
// panics on a type that is not one of the kinds.
func (s *Set) Put(o Object) {
	name := o.GetHeader().Metadata.Name
	switch o := o.(type) {
	case *Workload:
		s.Workloads = put(s.Workloads, name, o)
	case *Group:
		s.Groups = put(s.Groups, name, o)
	case *Service:
		s.Services = put(s.Services, name, o)
	case *ContextProfile:
		s.ContextProfiles = put(s.ContextProfiles, name, o)
	case *Policy:
		s.Policies = put(s.Policies, name, o)
	case *DefaultRule:
		s.Default = o
	case *IDSProfile:
		s.IDSProfiles = put(s.IDSProfiles, name, o)
	case *IDSVariables:
		s.IDSVariables = put(s.IDSVariables, name, o)
	default:
		panic(fmt.Sprintf("policy: Set.Put of %T", o))
	}
}

func put[T any](m map[string]*T, name string, o *T) map[string]*T {
	if m == nil {
		m = map[string]*T{}
	}
	m[name] = o
	return m
}

func get[T any](m map[string]*T, name string) (Object, bool) {
	o, ok := m[name]
	if !ok || o == nil {
		return nil, false
	}
	return any(o).(Object), true
}

// Get returns the object of kind and name.
func (s *Set) Get(kind Kind, name string) (Object, bool) {
	switch kind {
	case KindWorkload:
		return get(s.Workloads, name)
	case KindGroup:
		return get(s.Groups, name)
	case KindService:
		return get(s.Services, name)
	case KindContextProfile:
		return get(s.ContextProfiles, name)
	case KindPolicy:
		return get(s.Policies, name)
	case KindDefaultRule:
		if s.Default != nil && name == DefaultRuleName {
			return s.Default, true
		}
	case KindIDSProfile:
		return get(s.IDSProfiles, name)
	case KindIDSVariables:
		return get(s.IDSVariables, name)
	}
	return nil, false
}

func del[T any](m map[string]*T, name string) bool {
	_, ok := m[name]
	delete(m, name)
	return ok
}

// Delete removes the object of kind and name and reports whether it was
// there. Deleting the DefaultRule puts back the built-in one (allow), since
// a set always has a default rule.
func (s *Set) Delete(kind Kind, name string) bool {
	switch kind {
	case KindWorkload:
		return del(s.Workloads, name)
	case KindGroup:
		return del(s.Groups, name)
	case KindService:
		return del(s.Services, name)
	case KindContextProfile:
		return del(s.ContextProfiles, name)
	case KindPolicy:
		return del(s.Policies, name)
	case KindDefaultRule:
		if name != DefaultRuleName || s.Default == nil {
			return false
		}
		s.Default = NewSet().Default
		return true
	case KindIDSProfile:
		return del(s.IDSProfiles, name)
	case KindIDSVariables:
		return del(s.IDSVariables, name)
	}
	return false
}

func objects[T any](m map[string]*T) []Object {
	out := make([]Object, 0, len(m))
	for _, name := range sortedKeys(m) {
		if m[name] != nil {
			out = append(out, any(m[name]).(Object))
		}
	}
	return out
}

// Objects returns the objects of one kind, sorted by name.
func (s *Set) Objects(kind Kind) []Object {
	switch kind {
	case KindWorkload:
		return objects(s.Workloads)
	case KindGroup:
		return objects(s.Groups)
	case KindService:
		return objects(s.Services)
	case KindContextProfile:
		return objects(s.ContextProfiles)
	case KindPolicy:
		return objects(s.Policies)
	case KindDefaultRule:
		if s.Default != nil {
			return []Object{s.Default}
		}
	case KindIDSProfile:
		return objects(s.IDSProfiles)
	case KindIDSVariables:
		return objects(s.IDSVariables)
	}
	return nil
}

// All returns every object, kind by kind in Kinds order, each kind sorted by
// name.
func (s *Set) All() []Object {
	var out []Object
	for _, k := range Kinds {
		out = append(out, s.Objects(k)...)
	}
	return out
}

// AssignRuleIDs gives every rule that has no entry in RuleIDs a new id from
// next, and drops the entries of rules that are gone. New ids are handed out
// in policy-name order, then rule order, so the result does not depend on map
// iteration. next must never return an id it returned before, nor
// DefaultRuleID.
func (s *Set) AssignRuleIDs(next func() uint32) {
	if s.RuleIDs == nil {
		s.RuleIDs = map[string]uint32{}
	}
	live := map[string]bool{}
	for _, pname := range sortedKeys(s.Policies) {
		p := s.Policies[pname]
		if p == nil {
			continue
		}
		for _, r := range p.Spec.Rules {
			key := RuleKey(pname, r.Name)
			live[key] = true
			if _, ok := s.RuleIDs[key]; !ok {
				s.RuleIDs[key] = next()
			}
		}
	}
	for key := range s.RuleIDs {
		if !live[key] {
			delete(s.RuleIDs, key)
		}
	}
}

// Defaults returns r with the defaults of omitted fields filled in:
// direction inout, mode enforce. The stored rule is left as written, so that
// what is shown and diffed is what the user wrote.
func (r Rule) Defaults() Rule {
	if r.Direction == "" {
		r.Direction = DirectionInOut
	}
	if r.Mode == "" {
		r.Mode = ModeEnforce
	}
	return r
}

// Origins maps each document's object to where it came from, for
// Set.Validate.
func Origins(docs []Document) map[ObjectKey]Source {
	out := make(map[ObjectKey]Source, len(docs))
	for _, d := range docs {
		out[KeyOf(d.Object)] = d.Source
	}
	return out
}

// Apply returns a copy of base with docs put into it, after checking that
// no object is given twice and that the resulting set is valid. On error it
// returns nil and an ErrorList: nothing is half-applied.
func Apply(base *Set, docs []Document) (*Set, error) {
	var errs ErrorList
	first := map[ObjectKey]Source{}
	for _, d := range docs {
		key := KeyOf(d.Object)
		if prev, dup := first[key]; dup {
			errs = append(errs, &FieldError{Source: d.Source, Kind: key.Kind, Name: key.Name, Line: d.Source.Line,
				Reason: fmt.Sprintf("%s is defined twice; first in %s", key, describeSource(prev))})
			continue
		}
		first[key] = d.Source
	}
	if len(errs) > 0 {
		return nil, errs.Err()
	}
	s := base.Clone()
	if s == nil {
		s = NewSet()
	}
	for _, d := range docs {
		s.Put(d.Object)
	}
	if err := s.Validate(Origins(docs)).Err(); err != nil {
		return nil, err
	}
	return s, nil
}

func describeSource(s Source) string {
	var parts []string
	if s.File != "" {
		parts = append(parts, s.File)
	}
	if s.Index > 0 {
		parts = append(parts, fmt.Sprintf("document %d", s.Index))
	}
	if s.Line > 0 {
		parts = append(parts, fmt.Sprintf("line %d", s.Line))
	}
	if len(parts) == 0 {
		return "the same request"
	}
	return strings.Join(parts, " ")
}

// Validate checks the whole set: every object alone (ValidateObject), every
// reference to a group, service or context profile, group nesting without
// cycles, and no address belonging to two workloads. origin says where each
// object came from, so that errors can name file, document and line; it may
// be nil or lack objects.
func (s *Set) Validate(origin map[ObjectKey]Source) ErrorList {
	var errs ErrorList
	checkerFor := func(o Object) *checker {
		return newChecker(Document{Source: origin[KeyOf(o)], Object: o})
	}
	if s.Default == nil {
		errs = append(errs, &FieldError{Kind: KindDefaultRule, Name: DefaultRuleName, Reason: "the set has no default rule"})
	}
	for _, o := range s.All() {
		errs = append(errs, ValidateObject(Document{Source: origin[KeyOf(o)], Object: o})...)
	}
	checkKeys(s, func(key string, o Object) {
		if name := o.GetHeader().Metadata.Name; name != key {
			c := checkerFor(o)
			c.add("metadata.name", "stored under %q but named %q", key, name)
			errs = append(errs, c.errs...)
		}
	})

	ref := func(c *checker, field string, name string, exists bool, what string, candidates func() []string) {
		if exists {
			return
		}
		c.add(field, "unknown %s %q%s", what, name, suggest(name, candidates()))
	}
	groupNames := func() []string { return sortedKeys(s.Groups) }
	for _, o := range s.Objects(KindGroup) {
		g := o.(*Group)
		c := checkerFor(g)
		for i, n := range g.Spec.Groups {
			if n != "" && checkName(n) == "" {
				ref(c, fmt.Sprintf("spec.groups[%d]", i), n, s.Groups[n] != nil, "group", groupNames)
			}
		}
		errs = append(errs, c.errs...)
	}
	for _, o := range s.Objects(KindPolicy) {
		p := o.(*Policy)
		c := checkerFor(p)
		for i, n := range p.Spec.AppliedTo {
			if checkName(n) == "" {
				ref(c, fmt.Sprintf("spec.appliedTo[%d]", i), n, s.Groups[n] != nil, "group", groupNames)
			}
		}
		for ri, r := range p.Spec.Rules {
			f := fmt.Sprintf("spec.rules[%d]", ri)
			for _, list := range []struct {
				field string
				peers []string
			}{{"sources", r.Sources}, {"destinations", r.Destinations}} {
				for i, e := range list.peers {
					if peer, err := ParsePeer(e); err == nil && peer.Group != "" {
						ref(c, fmt.Sprintf("%s.%s[%d]", f, list.field, i), e, s.Groups[e] != nil, "group", groupNames)
					}
				}
			}
			for i, e := range r.Services {
				if sr, err := ParseServiceRef(e); err == nil && sr.Name != "" {
					ref(c, fmt.Sprintf("%s.services[%d]", f, i), e, s.Services[e] != nil, "service",
						func() []string { return sortedKeys(s.Services) })
				}
			}
			for i, e := range r.Profiles {
				if checkName(e) == "" {
					ref(c, fmt.Sprintf("%s.profiles[%d]", f, i), e, s.ContextProfiles[e] != nil, "context profile",
						func() []string { return sortedKeys(s.ContextProfiles) })
				}
			}
		}
		errs = append(errs, c.errs...)
	}
	for _, o := range s.Objects(KindIDSProfile) {
		p := o.(*IDSProfile)
		c := checkerFor(p)
		for i, n := range p.Spec.AppliedTo {
			if checkName(n) == "" {
				ref(c, fmt.Sprintf("spec.appliedTo[%d]", i), n, s.Groups[n] != nil, "group", groupNames)
			}
		}
		errs = append(errs, c.errs...)
	}
	errs = append(errs, s.groupCycles(checkerFor)...)
	errs = append(errs, s.sharedAddresses(checkerFor)...)
	errs.Sort()
	return errs
}

// checkKeys calls mismatch for every object stored under a key that is not
// its name.
func checkKeys(s *Set, mismatch func(key string, o Object)) {
	eachKey(s.Workloads, mismatch)
	eachKey(s.Groups, mismatch)
	eachKey(s.Services, mismatch)
	eachKey(s.ContextProfiles, mismatch)
	eachKey(s.Policies, mismatch)
	eachKey(s.IDSProfiles, mismatch)
	eachKey(s.IDSVariables, mismatch)
}

func eachKey[T any](m map[string]*T, fn func(key string, o Object)) {
	for _, k := range sortedKeys(m) {
		if m[k] != nil {
			fn(k, any(m[k]).(Object))
		}
	}
}

// groupCycles reports each cycle of nested groups once, at the group of the
// cycle whose name sorts first, as "a -> b -> c -> a".
func (s *Set) groupCycles(checkerFor func(Object) *checker) ErrorList {
	const (
		unvisited = iota
		onStack
		done
	)
	state := map[string]int{}
	var stack []string
	reported := map[string]bool{}
	var errs ErrorList
	var visit func(name string)
	visit = func(name string) {
		state[name] = onStack
		stack = append(stack, name)
		for _, next := range s.Groups[name].Spec.Groups {
			if s.Groups[next] == nil {
				continue // reported as unknown
			}
			switch state[next] {
			case unvisited:
				visit(next)
			case onStack:
				i := slices.Index(stack, next)
				cycle := slices.Clone(stack[i:])
				// Rotate so the smallest name leads: one cycle, one report.
				m := slices.Index(cycle, slices.Min(cycle))
				cycle = append(cycle[m:], cycle[:m]...)
				key := strings.Join(cycle, "\x00")
				if reported[key] {
					continue
				}
				reported[key] = true
				lead := s.Groups[cycle[0]]
				to := cycle[0]
				if len(cycle) > 1 {
					to = cycle[1]
				}
				c := checkerFor(lead)
				c.add(fmt.Sprintf("spec.groups[%d]", slices.Index(lead.Spec.Groups, to)),
					"reference cycle: %s -> %s", strings.Join(cycle, " -> "), cycle[0])
				errs = append(errs, c.errs...)
			}
		}
		stack = stack[:len(stack)-1]
		state[name] = done
	}
	for _, name := range sortedKeys(s.Groups) {
		if s.Groups[name] != nil && state[name] == unvisited {
			visit(name)
		}
	}
	return errs
}

// sharedAddresses reports an address that two workloads claim: the
// evaluator maps each address to one workload.
func (s *Set) sharedAddresses(checkerFor func(Object) *checker) ErrorList {
	owner := map[netip.Addr]string{}
	var errs ErrorList
	for _, name := range sortedKeys(s.Workloads) {
		w := s.Workloads[name]
		if w == nil {
			continue
		}
		for i, ip := range w.Spec.IPs {
			p, err := ParseIPOrCIDR(ip)
			if err != nil || !p.IsSingleIP() {
				continue // reported by ValidateObject
			}
			if prev, taken := owner[p.Addr()]; taken && prev != name {
				c := checkerFor(w)
				c.add(fmt.Sprintf("spec.ips[%d]", i), "address %s also belongs to workload %q", p.Addr(), prev)
				errs = append(errs, c.errs...)
				continue
			}
			owner[p.Addr()] = name
		}
	}
	return errs
}

// compareObjects orders objects by kind (Kinds order), then name.
func compareObjects(a, b ObjectKey) int {
	if c := cmp.Compare(slices.Index(Kinds, a.Kind), slices.Index(Kinds, b.Kind)); c != 0 {
		return c
	}
	return cmp.Compare(a.Name, b.Name)
}
