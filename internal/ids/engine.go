// Package ids is the signature engine of Bulkhead's distributed IDS/IPS:
// rules read by internal/ids/rules are compiled into an immutable Engine
// (a case-folding multi-pattern prefilter per buffer over each rule's fast
// pattern, then full matching with Suricata's semantics), and an Inspector
// runs one pass per packet over the traffic a host's firewall allowed: IP
// and transport decoding, a bounded flow table, TCP reassembly
// (internal/ids/stream), application-layer transactions
// (internal/ids/applayer) and the rules, producing Suricata EVE alerts and,
// inline, drop/reject verdicts.
//
// Regular expressions (Go's regexp, far slower than the prefilter) run
// last and rarely: a rule's contents are all checked first, and every
// pcre carries the runs of byte classes any match must contain, found in
// its syntax tree; where they are absent it does not run. A pcre without
// contents gets prefilter patterns from those runs. A pcre naming bytes
// above 0x7f (rules.Match.Latin1) reads its input one byte a rune, as
// PCRE does, unless the input is pure ASCII, where both readings agree.
package ids

import (
	"cmp"
	"fmt"
	"regexp"
	"regexp/syntax"
	"slices"
	"sync/atomic"

	"github.com/bulkhead/bulkhead/internal/ids/rules"
)

// Engine is a compiled rule set. It is immutable and safe for concurrent
// use by any number of Inspectors; an agent swaps engines atomically and
// flows keep their state across the swap.
type Engine struct {
	id    uint64
	rules []*crule
	// Streams and transactions: the prefilter of each buffer and the
	// rules that have no usable fast pattern there (always candidates).
	// pktPF are the packet payload prefilters by transport slot (tcp,
	// udp, other; ip rules are in each), so that a TCP payload is not
	// scanned for UDP rules' patterns.
	pktPF  [4]*prefilter
	hdr    headerIndex // the packet rules without a fast pattern
	stream ctxRules
	tx     ctxRules
	stats  EngineStats
}

// EngineStats counts what Compile produced.
type EngineStats struct {
	Rules int // compiled rules
	// Always is the number of rules without a usable fast pattern. On
	// packets they are found by port or address (headerIndex); on streams
	// and transactions they are evaluated every time, so they should be
	// few: AlwaysStreamTx counts those.
	Always         int
	AlwaysStreamTx int
	Patterns       int // fast patterns in the prefilters
	Packet         int // rules evaluated per packet (dsize, no_stream, ip/udp/icmp, header-only)
	Stream         int // rules on the reassembled TCP stream
	Tx             int // rules on application-layer buffers
}

type ctxRules struct {
	pf     [rules.NumBuffers]*prefilter
	always []int32
}

// Stats says what the engine holds.
func (e *Engine) Stats() EngineStats { return e.stats }

// Len is the number of compiled rules.
func (e *Engine) Len() int { return len(e.rules) }

// ruleCtx is where a rule is evaluated.
type ruleCtx uint8

const (
	ctxPacket ruleCtx = iota // each packet's payload
	ctxStream                // reassembled TCP data, in order
	ctxTx                    // application-layer transactions
)

// crule is a rule as the engine runs it.
type crule struct {
	r   *rules.Rule
	idx int32
	ctx ruleCtx
	// transport the rule needs (0: any IP); app the application protocol
	// the flow must have (0: none).
	transport uint8
	app       rules.Proto
	groups    []mgroup // matches per buffer, payload group first if any
	setsBits  bool
	checkBits bool
}

// mgroup is the matches of one buffer, in rule order.
type mgroup struct {
	buf rules.Buffer
	ms  []cmatch
	// positive says the group has a content or pcre that fixes a position
	// (used to report a stream match only once, see inspectStream).
	positive bool
	// sole is the group's only positive content or pcre (-1: none or
	// several): a stream match must end in the new bytes, so a bounded
	// sole pcre is searched only where such a match can start.
	sole int
}

type cmatch struct {
	rules.Match
	folded []byte         // Pattern folded to lower case, for nocase
	re     *regexp.Regexp // pcre
	// anchored: the expression starts with ^ or \A.
	anchored bool
	// retry: a later match of the group is relative, so a failure after
	// this content may be cured by its next occurrence (Suricata's
	// backtracking).
	retry bool
	// reqASCII and reqAny are runs of bytes every match of the pcre
	// contains, in pure ASCII input and in any input (nil: none useful).
	reqASCII, reqAny *reqSeq
	// maxRunes bounds the runes a match of the pcre spans (-1: no
	// bound); lookbehind says it tests what precedes a position (^, \b),
	// so that it cannot be run from the middle of a buffer.
	maxRunes   int
	lookbehind bool
}

var engineIDs atomic.Uint64

const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
)

// Compile turns rules into an engine. A rule the engine cannot honour is
// left out and reported as a Problem with its sid and the reason; the
// others compile.
func Compile(rs []*rules.Rule) (*Engine, []rules.Problem) {
	e := &Engine{id: engineIDs.Add(1)}
	var probs []rules.Problem
	type fp struct {
		ctx  ruleCtx
		buf  rules.Buffer
		pat  []byte
		ok   bool
		alts [][]byte
	}
	var cs []*crule
	var fps []fp
	reqs := reqCache{}
	for _, r := range rs {
		if r == nil {
			continue
		}
		c, f, err := compileRuleWith(r, reqs)
		if err != nil {
			probs = append(probs, rules.Problem{File: r.File, Line: r.Line, SID: r.SID, Reason: err.Error()})
			continue
		}
		cs = append(cs, c)
		fps = append(fps, fp{c.ctx, f.buf, f.pat, f.ok, f.alts})
	}

	// Evaluation order (Suricata's): pass, drop, reject, alert; within an
	// action, rules that set flowbits before those that check them, so
	// a bit set by one rule is seen by another on the same packet.
	order := make([]int, len(cs))
	for i := range order {
		order[i] = i
	}
	actionRank := func(a rules.Action) int {
		switch a {
		case rules.ActionPass:
			return 0
		case rules.ActionDrop:
			return 1
		case rules.ActionReject:
			return 2
		}
		return 3
	}
	bitsRank := func(c *crule) int {
		switch {
		case c.setsBits && !c.checkBits:
			return 0
		case c.setsBits:
			return 1
		case !c.checkBits:
			return 2
		}
		return 3
	}
	slices.SortStableFunc(order, func(a, b int) int {
		ca, cb := cs[a], cs[b]
		if d := cmp.Compare(actionRank(ca.r.Action), actionRank(cb.r.Action)); d != 0 {
			return d
		}
		return cmp.Compare(bitsRank(ca), bitsRank(cb))
	})

	type pfIn struct {
		pats [][]byte
		idx  []int32
	}
	var in [3][rules.NumBuffers]pfIn
	for _, oi := range order {
		c, f := cs[oi], fps[oi]
		c.idx = int32(len(e.rules))
		e.rules = append(e.rules, c)
		switch c.ctx {
		case ctxPacket:
			e.stats.Packet++
		case ctxStream:
			e.stats.Stream++
		case ctxTx:
			e.stats.Tx++
		}
		if !f.ok {
			e.stats.Always++
			if c.ctx == ctxPacket {
				e.hdr.add(c)
				continue
			}
			cr := e.ctx(c.ctx)
			cr.always = append(cr.always, c.idx)
			e.stats.AlwaysStreamTx++
			continue
		}
		for _, p := range append([][]byte{f.pat}, f.alts...) {
			in[c.ctx][f.buf].pats = append(in[c.ctx][f.buf].pats, p)
			in[c.ctx][f.buf].idx = append(in[c.ctx][f.buf].idx, c.idx)
		}
	}
	// Packet payload patterns by transport.
	var byT [4]pfIn
	pp := in[ctxPacket][rules.BufPayload]
	for j, p := range pp.pats {
		slot := transportSlot(e.rules[pp.idx[j]].transport)
		for s := 1; s < 4; s++ {
			if slot == 0 || slot == s {
				byT[s].pats = append(byT[s].pats, p)
				byT[s].idx = append(byT[s].idx, pp.idx[j])
			}
		}
	}
	for s := 1; s < 4; s++ {
		if len(byT[s].pats) > 0 {
			e.pktPF[s] = newPrefilter(byT[s].pats, byT[s].idx)
		}
	}
	in[ctxPacket][rules.BufPayload] = pfIn{}
	e.stats.Patterns += len(pp.pats)

	for ctx := ctxStream; ctx <= ctxTx; ctx++ {
		for b := range in[ctx] {
			if len(in[ctx][b].pats) == 0 {
				continue
			}
			pf := newPrefilter(in[ctx][b].pats, in[ctx][b].idx)
			e.ctx(ctx).pf[b] = pf
			e.stats.Patterns += len(pf.patRules)
		}
	}
	e.stats.Rules = len(e.rules)
	return e, probs
}

// ctx is the stream or transaction rules.
func (e *Engine) ctx(c ruleCtx) *ctxRules {
	if c == ctxStream {
		return &e.stream
	}
	return &e.tx
}

type fastPat struct {
	buf rules.Buffer
	pat []byte
	ok  bool
	// alts are further patterns any of which makes the rule a candidate
	// (a regular expression's necessary literals, pat being the first).
	alts [][]byte
}

// compileRule checks what the engine can honour, picks the context and
// the fast pattern, and compiles the regular expressions.
func compileRule(r *rules.Rule) (*crule, fastPat, error) {
	return compileRuleWith(r, reqCache{})
}

// reqCache shares the required runs of an expression among the rules
// that have it (rule sets repeat expressions; the runs are read-only).
type reqCache map[reqKey][2]*reqSeq

type reqKey struct {
	expr   string
	latin1 bool
}

func (c reqCache) get(expr string, latin1 bool) (ascii, general *reqSeq) {
	k := reqKey{expr, latin1}
	if v, ok := c[k]; ok {
		return v[0], v[1]
	}
	if re, err := syntax.Parse(expr, syntax.Perl); err == nil {
		re = re.Simplify()
		ascii = requiredOf(re, modeASCII)
		if latin1 {
			general = requiredOf(re, modeLatin1)
		} else {
			general = requiredOf(re, modeUTF8)
		}
	}
	c[k] = [2]*reqSeq{ascii, general}
	return ascii, general
}

func compileRuleWith(r *rules.Rule, reqs reqCache) (*crule, fastPat, error) {
	c := &crule{r: r}
	var f fastPat
	switch r.Action {
	case rules.ActionAlert, rules.ActionDrop, rules.ActionReject, rules.ActionPass:
	default:
		return nil, f, fmt.Errorf("unknown action %d", r.Action)
	}
	switch r.Proto {
	case rules.ProtoIP:
	case rules.ProtoTCP:
		c.transport = protoTCP
	case rules.ProtoUDP:
		c.transport = protoUDP
	case rules.ProtoICMP:
		c.transport = protoICMP
	case rules.ProtoHTTP, rules.ProtoTLS, rules.ProtoSSH, rules.ProtoSMTP, rules.ProtoFTP, rules.ProtoSMB:
		c.transport, c.app = protoTCP, r.Proto
	case rules.ProtoDNS:
		c.app = r.Proto // over UDP and TCP
	default:
		return nil, f, fmt.Errorf("unknown protocol %d", r.Proto)
	}
	for _, fb := range r.Flowbits {
		switch fb.Cmd {
		case rules.FlowbitSet, rules.FlowbitUnset, rules.FlowbitToggle:
			c.setsBits = true
		case rules.FlowbitIsSet, rules.FlowbitIsNotSet:
			c.checkBits = true
		default:
			return nil, f, fmt.Errorf("flowbits: unknown operation %d", fb.Cmd)
		}
		if len(fb.Names) == 0 {
			return nil, f, fmt.Errorf("flowbits: no name")
		}
	}
	if t := r.Threshold; t != nil {
		if t.Count < 0 || t.Seconds < 0 {
			return nil, f, fmt.Errorf("threshold: negative count or seconds")
		}
		switch t.Track {
		case rules.TrackBySrc, rules.TrackByDst, rules.TrackByRule, rules.TrackByBoth:
		default:
			return nil, f, fmt.Errorf("threshold: unknown track %d", t.Track)
		}
	}

	hasPayload, hasApp := false, false
	gi := map[rules.Buffer]int{}
	for i := range r.Matches {
		m := r.Matches[i]
		if m.Buffer >= rules.NumBuffers {
			return nil, f, fmt.Errorf("match %d: unknown buffer %d", i+1, m.Buffer)
		}
		cm := cmatch{Match: m}
		switch m.Kind {
		case rules.MatchContent:
			if len(m.Pattern) == 0 {
				return nil, f, fmt.Errorf("content %d: empty pattern", i+1)
			}
			if m.Nocase {
				cm.folded = fold(m.Pattern)
			}
		case rules.MatchPCRE:
			re, err := regexp.Compile(m.Regexp)
			if err != nil {
				return nil, f, fmt.Errorf("pcre %q: not RE2-compatible: %w", m.Regexp, err)
			}
			cm.re = re
			cm.anchored = anchoredRegexp(m.Regexp)
			cm.maxRunes, cm.lookbehind = widthOf(m.Regexp)
			cm.reqASCII, cm.reqAny = reqs.get(m.Regexp, m.Latin1)
		case rules.MatchByteTest, rules.MatchByteJump:
			if m.Bytes < 1 || m.Bytes > 10 || (!m.String && m.Bytes > 8) {
				return nil, f, fmt.Errorf("byte_test/byte_jump: %d bytes is out of range", m.Bytes)
			}
		case rules.MatchIsDataAt, rules.MatchBsize, rules.MatchUrilen:
		default:
			return nil, f, fmt.Errorf("match %d: unknown kind %d", i+1, m.Kind)
		}
		if m.Buffer == rules.BufPayload {
			hasPayload = true
		} else {
			hasApp = true
		}
		g, ok := gi[m.Buffer]
		if !ok {
			g = len(c.groups)
			gi[m.Buffer] = g
			c.groups = append(c.groups, mgroup{buf: m.Buffer})
		}
		if m.Kind == rules.MatchPCRE || (m.Kind == rules.MatchContent && !m.Negated) {
			c.groups[g].positive = true
		}
		c.groups[g].ms = append(c.groups[g].ms, cm)
	}
	for gi := range c.groups {
		g := &c.groups[gi]
		g.sole = -1
		n := 0
		for j := range g.ms {
			if k := g.ms[j].Kind; !g.ms[j].Negated && (k == rules.MatchContent || k == rules.MatchPCRE) {
				g.sole = j
				n++
			}
		}
		if n != 1 {
			g.sole = -1
		}
		ms := c.groups[gi].ms
		later := false
		for i := len(ms) - 1; i >= 0; i-- {
			ms[i].retry = later
			if relative(&ms[i].Match) {
				later = true
			}
		}
	}
	switch {
	case hasApp || r.TLSVersion != 0:
		// tls.version is a property of a TLS hello transaction. Payload
		// matches of such a rule look at the transaction's direction's
		// recent stream (or its datagram).
		c.ctx = ctxTx
		if r.Flow.NoStream || r.Dsize != nil {
			return nil, f, fmt.Errorf("dsize/no_stream cannot apply to application-layer buffers")
		}
		if c.app == 0 {
			// "alert tcp ... http.uri": the buffer implies the protocol.
			for _, g := range c.groups {
				if p := bufProto(g.buf); p != 0 {
					c.app = p
					break
				}
			}
		}
		if r.TLSVersion != 0 && c.app != rules.ProtoTLS && c.app != 0 {
			return nil, f, fmt.Errorf("tls.version on a %s rule", AppProtoName(c.app))
		}
		if c.app == 0 {
			c.app = rules.ProtoTLS
		}
	case c.transport == protoTCP && !r.Flow.NoStream && r.Dsize == nil && hasPayload:
		c.ctx = ctxStream
	default:
		c.ctx = ctxPacket
		if r.Flow.OnlyStream && c.transport == protoTCP {
			if r.Dsize != nil {
				return nil, f, fmt.Errorf("dsize with only_stream: dsize needs packets")
			}
			c.ctx = ctxStream
		}
	}
	if c.ctx == ctxStream && !hasPayload {
		return nil, f, fmt.Errorf("only_stream without payload matches")
	}
	// Payload rules on the ip protocol see every transport's payload;
	// their groups are just the payload.
	slices.SortStableFunc(c.groups, func(a, b mgroup) int { return cmp.Compare(a.buf, b.buf) })

	// Fast pattern: the content marked fast_pattern, else the longest
	// positive content (ties: the first).
	best, bestLen := -1, 0
	for i := range r.Matches {
		m := &r.Matches[i]
		if m.Kind != rules.MatchContent || m.Negated {
			continue
		}
		if m.FastPattern {
			best = i
			break
		}
		if len(m.Pattern) > bestLen {
			best, bestLen = i, len(m.Pattern)
		}
	}
	if best >= 0 {
		m := &r.Matches[best]
		p := m.Pattern
		if m.FastPatternOfs > 0 || m.FastPattLen > 0 {
			lo, hi := m.FastPatternOfs, m.FastPatternOfs+m.FastPattLen
			if lo >= 0 && lo < len(p) && hi > lo && hi <= len(p) {
				p = p[lo:hi]
			}
		}
		f = fastPat{buf: m.Buffer, pat: p, ok: true}
	} else {
		// No content: a pcre's necessary literals, if it has some.
		for i := range r.Matches {
			m := &r.Matches[i]
			if m.Kind != rules.MatchPCRE || m.Negated {
				continue
			}
			if fs := regexpFactors(m.Regexp, m.Latin1); fs != nil {
				f = fastPat{buf: m.Buffer, pat: fs[0], ok: true, alts: fs[1:]}
				break
			}
		}
	}
	if !f.ok {
		// Else the literals a pcre's required runs spell (" (4\d{3}|...)
		// \d{4}" spells " 30" to " 69"): a rule without them would be
		// a candidate on every packet or stream chunk.
		for _, g := range c.groups {
			for j := range g.ms {
				m := &g.ms[j]
				if m.re == nil || m.Negated {
					continue
				}
				if fs := m.reqAny.literals(); fs != nil {
					f = fastPat{buf: g.buf, pat: fs[0], ok: true, alts: fs[1:]}
					return c, f, nil
				}
			}
		}
	}
	return c, f, nil
}

func relative(m *rules.Match) bool {
	switch m.Kind {
	case rules.MatchContent:
		return m.HasDistance || m.HasWithin
	case rules.MatchPCRE, rules.MatchByteTest, rules.MatchByteJump, rules.MatchIsDataAt:
		return m.Relative
	}
	return false
}

func fold(p []byte) []byte {
	out := make([]byte, len(p))
	for i, c := range p {
		out[i] = foldTable[c]
	}
	return out
}

// bufProto is the application protocol a sticky buffer belongs to.
func bufProto(b rules.Buffer) rules.Proto {
	switch {
	case b >= rules.BufHTTPURI && b <= rules.BufHTTPConnection, b == rules.BufHTTPAcceptEnc, b == rules.BufHTTPAcceptLang:
		return rules.ProtoHTTP
	case b >= rules.BufTLSSNI && b <= rules.BufJA3Hash,
		b == rules.BufTLSCerts, b == rules.BufJA3SHash, b == rules.BufTLSCertSerial, b == rules.BufJA3String:
		return rules.ProtoTLS
	case b == rules.BufDNSQuery:
		return rules.ProtoDNS
	case b == rules.BufSSHSoftware || b == rules.BufSSHProto:
		return rules.ProtoSSH
	}
	return 0
}

// bufDirs says in which directions a sticky buffer exists (bit 0:
// to_server, bit 1: to_client), as Suricata registers them: a request's
// buffers are not matched on the response transaction that repeats them.
var bufDirs = func() (d [rules.NumBuffers]uint8) {
	const toServer, toClient, both = 1, 2, 3
	for b := range d {
		d[b] = both
	}
	for _, b := range []rules.Buffer{
		rules.BufHTTPURI, rules.BufHTTPURIRaw, rules.BufHTTPMethod, rules.BufHTTPHost, rules.BufHTTPHostRaw,
		rules.BufHTTPUserAgent, rules.BufHTTPCookie, rules.BufHTTPReferer, rules.BufHTTPRequestLine,
		rules.BufHTTPRequestBody, rules.BufHTTPAccept, rules.BufTLSSNI, rules.BufJA3Hash, rules.BufDNSQuery,
		rules.BufHTTPAcceptEnc, rules.BufHTTPAcceptLang, rules.BufJA3String,
	} {
		d[b] = toServer
	}
	for _, b := range []rules.Buffer{
		rules.BufHTTPStatCode, rules.BufHTTPStatMsg, rules.BufHTTPResponseLine, rules.BufHTTPResponseBody,
		rules.BufHTTPServer, rules.BufHTTPLocation, rules.BufTLSCertSubject, rules.BufTLSCertIssuer,
		rules.BufTLSCerts, rules.BufJA3SHash, rules.BufTLSCertSerial,
	} {
		d[b] = toClient
	}
	return d
}()

// anchoredRegexp says whether every match of expr starts at the start of
// the text (or of a line).
func anchoredRegexp(expr string) bool {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return false
	}
	for re.Op == syntax.OpConcat || re.Op == syntax.OpCapture {
		if len(re.Sub) == 0 {
			return false
		}
		re = re.Sub[0]
	}
	return re.Op == syntax.OpBeginText || re.Op == syntax.OpBeginLine
}
