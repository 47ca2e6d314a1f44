package dpi

import "bytes"

// Protocols whose first message is text: HTTP/1, HTTP/2's cleartext
// preface, SSH banners, SMTP/FTP greetings and commands, Redis RESP.

const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

var httpMethods = [...]string{"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE"}

// prefixOf says whether b is a prefix of s (b shorter) or starts with s.
func prefixOf(b []byte, s string) (full, partial bool) {
	if len(b) >= len(s) {
		return string(b[:len(s)]) == s, false
	}
	return false, string(b) == s[:len(b)]
}

// line returns b's first line without its CR LF, and whether it ended
// within max bytes.
func line(b []byte, max int) ([]byte, bool) {
	if len(b) > max {
		b = b[:max]
	}
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return b, false
	}
	b = b[:i]
	if len(b) > 0 && b[len(b)-1] == '\r' {
		b = b[:len(b)-1]
	}
	return b, true
}

// httpStart recognises an HTTP/1 request line or the HTTP/2 preface.
func (f *Flow) httpStart(dir Dir, b []byte) status {
	if dir != Client || len(b) == 0 || b[0] < 'A' || b[0] > 'Z' {
		return no
	}
	if full, partial := prefixOf(b, h2Preface); full {
		return f.decide(AppHTTP2, phaseDone)
	} else if partial {
		return more
	}
	sp := bytes.IndexByte(b[:min(len(b), 17)], ' ')
	if sp < 0 {
		for _, m := range httpMethods {
			if _, partial := prefixOf(b, m); partial {
				return more
			}
		}
		return no
	}
	method := b[:sp]
	for _, c := range method {
		if c < 'A' || c > 'Z' {
			return no
		}
	}
	known := false
	for _, m := range httpMethods {
		known = known || string(method) == m
	}
	req, ended := line(b, 8192)
	if !ended {
		if !known || len(b) >= 8192 {
			return no
		}
		return more
	}
	rest := req[sp+1:]
	sp2 := bytes.LastIndexByte(rest, ' ')
	if sp2 <= 0 {
		return no
	}
	target, proto := rest[:sp2], rest[sp2+1:]
	if len(proto) != 8 || string(proto[:7]) != "HTTP/1." || proto[7] < '0' || proto[7] > '9' {
		return no
	}
	for _, c := range target {
		if c <= ' ' || c == 0x7f {
			return no
		}
	}
	setText(f.res.method[:], &f.res.methodLen, method)
	setText(f.res.path[:], &f.res.pathLen, target)
	f.decide(AppHTTP, phaseHTTP)
	return f.httpRequest(b, false)
}

// httpRequest reads the request headers (the request line again first)
// for the Host.
func (f *Flow) httpRequest(b []byte, final bool) status {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return more
	}
	b = b[i+1:]
	for {
		h, ended := line(b, len(b))
		if !ended {
			if final {
				f.phase = phaseDone
				return yes
			}
			return more
		}
		if len(h) == 0 {
			f.phase = phaseDone
			return yes
		}
		if len(h) > 5 && h[4] == ':' && equalFold(h[:4], "host") {
			v := bytes.TrimSpace(h[5:])
			setText(f.res.host[:], &f.res.hostLen, stripPort(v))
		}
		b = b[len(h)+1:]
		if len(b) > 0 && b[0] == '\n' {
			b = b[1:]
		}
	}
}

// stripPort drops ":port" from a Host header value ("[::1]:8080" -> "[::1]").
func stripPort(h []byte) []byte {
	i := bytes.LastIndexByte(h, ':')
	if i < 0 || bytes.IndexByte(h[i:], ']') >= 0 {
		return h
	}
	for _, c := range h[i+1:] {
		if c < '0' || c > '9' {
			return h
		}
	}
	return h[:i]
}

func equalFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// containsFold says whether b contains upper, ignoring ASCII case.
func containsFold(b []byte, upper string) bool {
	for i := 0; i+len(upper) <= len(b); i++ {
		j := 0
		for ; j < len(upper); j++ {
			c := b[i+j]
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			if c != upper[j] {
				break
			}
		}
		if j == len(upper) {
			return true
		}
	}
	return false
}

// sshStart recognises an SSH identification line ("SSH-2.0-OpenSSH_9.2").
func (f *Flow) sshStart(dir Dir, b []byte) status {
	st := f.sshBanner(dir, b, false)
	if st != yes {
		return st
	}
	if dir == Server {
		return f.decide(AppSSH, phaseDone)
	}
	f.bannerDir = dir
	return f.decide(AppSSH, phaseSSHPeer)
}

// sshBanner reads an identification line into Detail; the server's wins.
func (f *Flow) sshBanner(dir Dir, b []byte, final bool) status {
	if full, partial := prefixOf(b, "SSH-"); !full {
		if partial && !final {
			return more
		}
		return no
	}
	l, ended := line(b, 255)
	if !ended {
		if len(b) >= 255 || final {
			return no
		}
		return more
	}
	// SSH-protoversion-softwareversion: both printable, no spaces in either.
	rest := l[4:]
	dash := bytes.IndexByte(rest, '-')
	if dash <= 0 || dash+1 == len(rest) {
		return no
	}
	for _, c := range rest[:dash] {
		if (c < '0' || c > '9') && c != '.' {
			return no
		}
	}
	for _, c := range rest {
		if c < ' ' || c > '~' {
			return no
		}
	}
	if dir == Server || f.res.detailLen == 0 {
		setText(f.res.detail[:], &f.res.detailLen, rest)
	}
	return yes
}

// greeting recognises a server's "220" greeting: SMTP or FTP by its text,
// else by the client's first command.
func (f *Flow) greeting(dir Dir, b []byte) status {
	if dir != Server {
		return no
	}
	if full, partial := prefixOf(b, "220"); !full {
		if partial {
			return more
		}
		return no
	}
	if len(b) < 4 {
		return more
	}
	if b[3] != ' ' && b[3] != '-' {
		return no
	}
	l, ended := line(b, 512)
	if !ended {
		if len(b) >= 512 {
			return no
		}
		return more
	}
	for _, c := range l {
		if c < ' ' && c != '\t' || c == 0x7f {
			return no
		}
	}
	setText(f.res.detail[:], &f.res.detailLen, l[4:])
	switch {
	case containsFold(l, "SMTP"):
		return f.decide(AppSMTP, phaseDone)
	case containsFold(l, "FTP"):
		return f.decide(AppFTP, phaseDone)
	}
	f.phase = phaseMailCmd
	return yes
}

var (
	smtpCommands = [...]string{"EHLO ", "HELO ", "MAIL FROM:", "STARTTLS"}
	ftpCommands  = [...]string{"USER ", "AUTH TLS", "AUTH SSL", "FEAT", "SYST", "OPTS ", "PASS "}
)

// mailCommand decides SMTP or FTP by the client's command after a greeting
// that named neither.
func (f *Flow) mailCommand(b []byte, final bool) status {
	l, ended := line(b, 512)
	if !ended {
		if final || len(b) >= 512 {
			f.phase = phaseDone
			return no
		}
		return more
	}
	f.phase = phaseDone
	if a := mailApp(l); a != AppUnknown {
		f.res.App = a
		return yes
	}
	f.res.detailLen = 0
	return no
}

func mailApp(l []byte) App {
	for _, c := range smtpCommands {
		if hasPrefixFold(l, c) {
			return AppSMTP
		}
	}
	for _, c := range ftpCommands {
		if hasPrefixFold(l, c) {
			return AppFTP
		}
	}
	return AppUnknown
}

// hasPrefixFold says whether b starts with upper, ignoring ASCII case.
func hasPrefixFold(b []byte, upper string) bool {
	return len(b) >= len(upper) && containsFold(b[:len(upper)], upper)
}

// mailCommandStart recognises an SMTP or FTP client command when the
// greeting was not seen (a capture that began late).
func (f *Flow) mailCommandStart(dir Dir, b []byte) status {
	if dir != Client || len(b) < 4 || b[0] < 'A' || b[0] > 'Z' {
		return no
	}
	l, ended := line(b, 512)
	if !ended {
		return no
	}
	if a := mailApp(l); a != AppUnknown {
		return f.decide(a, phaseDone)
	}
	return no
}

// redis recognises a RESP command: an array of bulk strings whose first is
// a command name ("*1\r\n$4\r\nPING\r\n").
func (f *Flow) redis(dir Dir, b []byte) status {
	if dir != Client || len(b) == 0 || b[0] != '*' {
		return no
	}
	r := b[1:]
	n, r, st := respInt(r)
	if st != yes {
		return st
	}
	if n < 1 || n > 1<<20 {
		return no
	}
	if len(r) == 0 {
		return more
	}
	if r[0] != '$' {
		return no
	}
	l, r, st := respInt(r[1:])
	if st != yes {
		return st
	}
	if l < 1 || l > 64 {
		return no
	}
	if len(r) < l+2 {
		return more
	}
	cmd := r[:l]
	for _, c := range cmd {
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || c == '.' || c == '|' || c == '_') {
			return no
		}
	}
	if r[l] != '\r' || r[l+1] != '\n' {
		return no
	}
	setText(f.res.detail[:], &f.res.detailLen, cmd)
	return f.decide(AppRedis, phaseDone)
}

// respInt reads decimal digits ended by CR LF.
func respInt(b []byte) (int, []byte, status) {
	n := 0
	for i, c := range b {
		switch {
		case '0' <= c && c <= '9' && i < 8:
			n = n*10 + int(c-'0')
		case c == '\r' && i > 0:
			if len(b) == i+1 {
				return 0, nil, more
			}
			if b[i+1] != '\n' {
				return 0, nil, no
			}
			return n, b[i+2:], yes
		default:
			return 0, nil, no
		}
	}
	return 0, nil, more
}
