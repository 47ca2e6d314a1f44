package dnssnoop

import "strings"

// NameAgrees says whether the name a connection presents — a TLS SNI or an
// HTTP Host header — is one of names, the names the cache holds for the
// connection's destination. An HTTP Host may carry a port ("a.example:8080",
// "[2001:db8::1]:443"); case and a final dot do not matter. An empty seen
// name, or one that is an IP literal, agrees with nothing: a client that
// names no host, or names the address itself, did not show which name it
// resolved, and the caller decides what that means.
func NameAgrees(names []string, seen string) bool {
	host := hostOnly(seen)
	if host == "" || isIPLiteral(host) {
		return false
	}
	for _, n := range names {
		if len(n) > 0 && n[len(n)-1] == '.' {
			n = n[:len(n)-1]
		}
		if strings.EqualFold(n, host) {
			return true
		}
	}
	return false
}

// BindingsAgree is NameAgrees over a cache's bindings for an address.
func BindingsAgree(bs []Binding, seen string) bool {
	host := hostOnly(seen)
	if host == "" || isIPLiteral(host) {
		return false
	}
	for _, b := range bs {
		if strings.EqualFold(b.Name, host) {
			return true
		}
	}
	return false
}

// hostOnly strips a port, IPv6 brackets and a final dot.
func hostOnly(s string) string {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "[") {
		if i := strings.IndexByte(s, ']'); i > 0 {
			return s[1:i]
		}
		return ""
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 && strings.IndexByte(s, ':') == i {
		s = s[:i]
	}
	return strings.TrimSuffix(s, ".")
}

func isIPLiteral(h string) bool {
	if strings.IndexByte(h, ':') >= 0 {
		return true
	}
	dots := 0
	for i := 0; i < len(h); i++ {
		switch c := h[i]; {
		case c == '.':
			dots++
		case c < '0' || c > '9':
			return false
		}
	}
	return dots == 3
}
