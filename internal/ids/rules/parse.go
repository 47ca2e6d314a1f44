package rules

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strconv"
	"strings"
)

// Error is why one rule did not parse.
type Error struct {
	Col     int    // 1-based byte column in the rule's text; 0 when unknown
	Option  string // the option it is in; "" for the header
	Keyword string // set when something unsupported (a keyword, a protocol, a pcre construct) is the reason
	SID     uint32 // 0 when the sid could not be read
	Reason  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Col > 0 {
		fmt.Fprintf(&b, "col %d: ", e.Col)
	}
	if e.Option != "" {
		b.WriteString(e.Option)
		b.WriteString(": ")
	} else {
		b.WriteString("header: ")
	}
	b.WriteString(e.Reason)
	return b.String()
}

// Parse reads one rule; nil vars means DefaultVars. A rule may be written
// over several lines ending in "\" as in a rule file.
func Parse(text string, vars *Vars) (*Rule, error) {
	p := parser{res: newResolver(vars)}
	text = strings.TrimSpace(text)
	if strings.Contains(text, "\\\n") {
		text = joinContinuations(text)
	}
	r, err := p.parse(text)
	if err != nil {
		if err.SID == 0 {
			err.SID = sidOf(text)
		}
		return nil, err
	}
	return r, nil
}

func joinContinuations(text string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(text, "\n") {
		line = strings.TrimRight(line, " \t\r")
		if strings.HasSuffix(line, "\\") {
			b.WriteString(line[:len(line)-1])
			continue
		}
		b.WriteString(line)
	}
	return strings.TrimSpace(b.String())
}

// Read reads a rule file: one rule a line, lines ending in "\" continued
// on the next, # comments and blank lines skipped (a commented-out rule is
// neither loaded nor a problem). Each line that is no loadable rule is a
// Problem; the others load. A gid:sid seen before in the same read is a
// Problem too. nil vars means DefaultVars. Rules with the same address or
// port specification share one *AddrSet or *PortSet: treat them as
// read-only.
func Read(r io.Reader, file string, vars *Vars) ([]*Rule, []Problem) {
	data, err := readAll(r)
	if err != nil {
		return nil, []Problem{{File: file, Reason: fmt.Sprintf("read: %v", err)}}
	}
	p := parser{res: newResolver(vars)}
	var (
		out   []*Rule
		probs []Problem
		seen  = map[uint64]int{}
		cont  []byte // the rule so far when continued
		more  bool   // the previous line ended in "\"
	)
	text := data
	line, start := 0, 0
	for len(text) > 0 {
		var l []byte
		if i := bytes.IndexByte(text, '\n'); i >= 0 {
			l, text = text[:i], text[i+1:]
		} else {
			l, text = text, nil
		}
		line++
		l = bytes.TrimRight(l, " \t\r")
		if !more {
			t := bytes.TrimLeft(l, " \t")
			if len(t) == 0 || t[0] == '#' {
				continue
			}
			start = line
		}
		if bytes.HasSuffix(l, []byte("\\")) && len(text) > 0 {
			cont = append(cont, l[:len(l)-1]...)
			more = true
			continue
		}
		if more {
			l = append(cont, l...)
			cont, more = cont[:0], false
		}
		// Each rule's text is its own string, so that the rules do not
		// hold the whole file.
		raw := string(bytes.TrimSpace(l))
		rule, perr := p.parse(raw)
		if perr != nil {
			sid := perr.SID
			if sid == 0 {
				sid = sidOf(raw)
			}
			probs = append(probs, Problem{File: file, Line: start, SID: sid, Reason: perr.Error(), Keyword: perr.Keyword})
			continue
		}
		key := uint64(rule.GID)<<32 | uint64(rule.SID)
		if first, dup := seen[key]; dup {
			probs = append(probs, Problem{File: file, Line: start, SID: rule.SID,
				Reason: fmt.Sprintf("duplicate sid %d, first at line %d", rule.SID, first)})
			continue
		}
		seen[key] = start
		rule.File, rule.Line = file, start
		out = append(out, rule)
	}
	return out, probs
}

// readAll reads r whole, in one allocation when r tells its size.
func readAll(r io.Reader) ([]byte, error) {
	size := 0
	switch v := r.(type) {
	case interface{ Len() int }:
		size = v.Len()
	case interface{ Stat() (fs.FileInfo, error) }:
		if fi, err := v.Stat(); err == nil && fi.Mode().IsRegular() {
			size = int(fi.Size())
		}
	}
	if size <= 0 {
		return io.ReadAll(r)
	}
	var b bytes.Buffer
	b.Grow(size + bytes.MinRead)
	_, err := b.ReadFrom(r)
	return b.Bytes(), err
}

// sidOf finds the sid in a rule that did not parse, for its Problem.
func sidOf(text string) uint32 {
	for i := 0; ; {
		j := strings.Index(text[i:], "sid")
		if j < 0 {
			return 0
		}
		i += j
		before := i - 1
		for before >= 0 && (text[before] == ' ' || text[before] == '\t') {
			before--
		}
		k := i + 3
		for k < len(text) && text[k] == ' ' {
			k++
		}
		if before >= 0 && (text[before] == ';' || text[before] == '(') && k < len(text) && text[k] == ':' {
			k++
			for k < len(text) && text[k] == ' ' {
				k++
			}
			e := k
			for e < len(text) && '0' <= text[e] && text[e] <= '9' {
				e++
			}
			n, err := strconv.ParseUint(text[k:e], 10, 32)
			if err == nil {
				return uint32(n)
			}
		}
		i += 3
	}
}

// parser reads rules; it is reused across the rules of one file so that
// the resolver's cache of header specifications pays off.
type parser struct {
	res *resolver

	// Per rule.
	r    *Rule
	text string
	col  int    // 1-based column of the option being read
	opt  string // its name
	cur  Buffer // the sticky buffer in force
	// lastContent is the index in r.Matches of the last content, -1 for
	// none; lastMoved says a legacy modifier (http_uri; ...) moved it out
	// of the sticky buffer.
	lastContent  int
	lastMoved    bool
	hasPriority  bool
	fastPatterns int
	threshold    bool
	dotprefix    bool // the sticky buffer in force has the dotprefix transform
	// matches collects the rule's matches; the rule gets an exact copy.
	matches []Match
}

// add appends a match, with the transform of its buffer.
func (p *parser) add(m Match) {
	m.DotPrefix = p.dotprefix && m.Buffer == p.cur
	p.matches = append(p.matches, m)
}

func (p *parser) errf(format string, args ...any) *Error {
	return &Error{Col: p.col, Option: p.opt, SID: p.r.SID, Reason: fmt.Sprintf(format, args...)}
}

func (p *parser) unsupported(keyword, format string, args ...any) *Error {
	e := p.errf(format, args...)
	e.Keyword = keyword
	return e
}

func (p *parser) parse(text string) (*Rule, *Error) {
	p.r = &Rule{Raw: text, GID: 1}
	p.text = text
	p.col, p.opt = 1, ""
	p.cur = BufPayload
	p.lastContent, p.lastMoved = -1, false
	p.hasPriority, p.fastPatterns, p.threshold, p.dotprefix = false, 0, false, false
	p.matches = p.matches[:0]

	open := strings.IndexByte(text, '(')
	if open < 0 {
		return nil, p.errf("no options: a rule is \"action proto src sport -> dst dport (options)\"")
	}
	if err := p.header(text[:open]); err != nil {
		return nil, err
	}
	end := strings.LastIndexByte(text, ')')
	if end < open || strings.TrimSpace(text[end+1:]) != "" {
		p.col = len(text)
		return nil, p.errf("options not closed by \")\" at the end of the rule")
	}
	if err := p.options(open+1, end); err != nil {
		return nil, err
	}
	if len(p.matches) > 0 {
		p.r.Matches = slices.Clone(p.matches)
	}
	if err := p.finish(); err != nil {
		return nil, err
	}
	return p.r, nil
}

// header reads "action proto src sport dir dst dport".
func (p *parser) header(h string) *Error {
	var fields [7]string
	var cols [7]int
	n := 0
	depth := 0
	start := -1
	for i := 0; i <= len(h); i++ {
		space := i == len(h) || h[i] == ' ' || h[i] == '\t'
		if i < len(h) {
			switch h[i] {
			case '[':
				depth++
			case ']':
				depth--
			}
		}
		if space && depth <= 0 {
			if start >= 0 {
				if n == len(fields) {
					p.col = start + 1
					return p.errf("too many header fields: want action proto src sport -> dst dport")
				}
				fields[n], cols[n] = h[start:i], start+1
				n++
				start = -1
			}
			continue
		}
		if start < 0 {
			start = i
		}
	}
	if n != len(fields) {
		return p.errf("header has %d fields, want 7: action proto src sport -> dst dport", n)
	}
	r := p.r
	p.col = cols[0]
	switch fields[0] {
	case "alert":
		r.Action = ActionAlert
	case "drop":
		r.Action = ActionDrop
	case "reject", "rejectsrc", "rejectdst", "rejectboth":
		r.Action = ActionReject
	case "pass":
		r.Action = ActionPass
	default:
		return p.unsupported("action "+fields[0], "unknown action %q: want alert, drop, reject or pass", fields[0])
	}
	p.col = cols[1]
	switch fields[1] {
	case "ip":
		r.Proto = ProtoIP
	case "tcp", "tcp-pkt", "tcp-stream":
		r.Proto = ProtoTCP
	case "udp":
		r.Proto = ProtoUDP
	case "icmp", "icmpv4", "icmpv6":
		r.Proto = ProtoICMP
	case "http", "http1":
		r.Proto = ProtoHTTP
	case "tls":
		r.Proto = ProtoTLS
	case "dns":
		r.Proto = ProtoDNS
	case "ssh":
		r.Proto = ProtoSSH
	case "smtp":
		r.Proto = ProtoSMTP
	case "ftp":
		r.Proto = ProtoFTP
	case "smb":
		r.Proto = ProtoSMB
	default:
		return p.unsupported("protocol "+fields[1], "protocol %q is not supported", fields[1])
	}
	var err error
	p.col = cols[2]
	if r.Src, err = p.res.addrSet(fields[2]); err != nil {
		return p.errf("source: %v", err)
	}
	p.col = cols[3]
	if r.SrcPorts, err = p.res.portSet(fields[3]); err != nil {
		return p.errf("source port: %v", err)
	}
	p.col = cols[4]
	switch fields[4] {
	case "->":
	case "<>":
		r.Bidirectional = true
	default:
		return p.errf("direction %q: want -> or <>", fields[4])
	}
	p.col = cols[5]
	if r.Dst, err = p.res.addrSet(fields[5]); err != nil {
		return p.errf("destination: %v", err)
	}
	p.col = cols[6]
	if r.DstPorts, err = p.res.portSet(fields[6]); err != nil {
		return p.errf("destination port: %v", err)
	}
	return nil
}

// options reads "name[:value];" options between text[from:to].
func (p *parser) options(from, to int) *Error {
	t := p.text
	i := from
	for {
		for i < to && (t[i] == ' ' || t[i] == '\t') {
			i++
		}
		if i >= to {
			return nil
		}
		p.col, p.opt = i+1, ""
		nameEnd := i
		for nameEnd < to && t[nameEnd] != ':' && t[nameEnd] != ';' {
			nameEnd++
		}
		p.opt = strings.TrimSpace(t[i:nameEnd])
		if nameEnd >= to {
			return p.errf("option not terminated by \";\"")
		}
		if p.opt == "" {
			return p.errf("empty option")
		}
		var value string
		hasValue := t[nameEnd] == ':'
		if hasValue {
			j := nameEnd + 1
			for j < to && t[j] != ';' {
				if t[j] == '\\' {
					j++
				}
				j++
			}
			if j >= to {
				return p.errf("option not terminated by \";\"")
			}
			value = strings.TrimSpace(t[nameEnd+1 : j])
			i = j + 1
		} else {
			i = nameEnd + 1
		}
		if err := p.option(p.opt, value, hasValue); err != nil {
			return err
		}
	}
}

// finish checks the rule as a whole and fills what depends on all of it.
func (p *parser) finish() *Error {
	r := p.r
	p.col, p.opt = 0, ""
	if r.SID == 0 {
		return p.errf("no sid")
	}
	if !p.hasPriority {
		r.Priority = 3
		if r.Classtype != "" {
			if pr, ok := ClassPriority(r.Classtype); ok {
				r.Priority = pr
			}
		}
	}
	// Buffers and tls.version only exist in one application protocol: a
	// transport rule using them is a rule for that protocol, as in
	// Suricata; an application rule must be for the same one.
	need := Proto(0)
	var needBy string
	want := func(pr Proto, by string) *Error {
		switch {
		case need == 0:
			need, needBy = pr, by
		case need != pr:
			return p.errf("%s and %s belong to different protocols", needBy, by)
		}
		return nil
	}
	for _, m := range r.Matches {
		if pr := bufferProto(m.Buffer); pr != 0 {
			if err := want(pr, bufferNames[m.Buffer]); err != nil {
				return err
			}
		}
	}
	if r.TLSVersion != 0 {
		if err := want(ProtoTLS, "tls.version"); err != nil {
			return err
		}
	}
	if need != 0 {
		switch r.Proto {
		case ProtoIP, ProtoTCP:
			r.Proto = need
		case ProtoUDP:
			if need != ProtoDNS {
				return p.errf("%s needs a TCP protocol, the rule is udp", needBy)
			}
			r.Proto = need
		default:
			if r.Proto != need {
				return p.errf("%s does not apply to %s rules", needBy, protoNames[r.Proto])
			}
		}
	}
	return nil
}
