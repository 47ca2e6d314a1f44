// Package ldap reads users and groups from an LDAP server or Active
// Directory with go-ldap (simple bind, StartTLS or ldaps, paged searches)
// and links group members to users and nested groups by DN.
package ldap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	goldap "github.com/go-ldap/ldap/v3"

	"github.com/bulkhead/bulkhead/internal/directory"
)

// Default filters find the people and groups of Active Directory
// (user/group objects, member DNs), of RFC 2307bis / OpenLDAP
// (inetOrgPerson, groupOfNames or groupOfUniqueNames with member DNs) and
// of plain RFC 2307 (posixAccount, posixGroup with memberUid names).
const (
	DefaultUserFilter  = "(|(&(objectClass=user)(objectCategory=person))(objectClass=inetOrgPerson)(objectClass=posixAccount))"
	DefaultGroupFilter = "(|(objectClass=group)(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))"
	// DefaultPageSize stays under Active Directory's MaxPageSize (1000).
	DefaultPageSize = 500
)

// Config is one directory source.
type Config struct {
	Source      string
	URL         string // ldap://host:389 or ldaps://host:636
	BindDN      string // empty: anonymous
	Password    string
	BaseDN      string
	UserFilter  string // DefaultUserFilter when empty
	GroupFilter string // DefaultGroupFilter when empty
	StartTLS    bool
	// Insecure skips verification of the server's certificate.
	Insecure bool
	// CAFile is a PEM bundle to verify the server with instead of the
	// system's roots.
	CAFile   string
	PageSize uint32
	Timeout  time.Duration // per request; 30 s when zero
}

// Check validates a configuration without connecting.
func Check(c Config) error {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "ldap" && u.Scheme != "ldaps") || u.Host == "" {
		return fmt.Errorf("url %q: want ldap://host[:389] or ldaps://host[:636]", c.URL)
	}
	if u.Scheme == "ldaps" && c.StartTLS {
		return fmt.Errorf("url %q: StartTLS is for ldap://, ldaps:// is TLS already", c.URL)
	}
	if c.BaseDN == "" {
		return errors.New("base DN: missing")
	}
	if _, err := goldap.ParseDN(c.BaseDN); err != nil {
		return fmt.Errorf("base DN %q: %w", c.BaseDN, err)
	}
	if c.BindDN != "" && !strings.Contains(c.BindDN, "@") && !strings.Contains(c.BindDN, `\`) {
		if _, err := goldap.ParseDN(c.BindDN); err != nil {
			return fmt.Errorf("bind DN %q: %w", c.BindDN, err)
		}
	}
	for _, f := range []struct{ name, v string }{{"user filter", c.UserFilter}, {"group filter", c.GroupFilter}} {
		if f.v == "" {
			continue
		}
		if _, err := goldap.CompileFilter(f.v); err != nil {
			return fmt.Errorf("%s %q: %w", f.name, f.v, err)
		}
	}
	return nil
}

// Result is what one sync read.
type Result struct {
	Users  []directory.User
	Groups []directory.Group
	// Skipped says what was left out and why: entries without a name,
	// members that are neither a synced user nor a synced group.
	Skipped []string
}

// userAttrs are read from users: the first of the name attributes present
// names the user.
var (
	userNameAttrs = []string{"sAMAccountName", "uid", "cn"}
	userAttrs     = []string{"sAMAccountName", "uid", "cn", "displayName"}
	groupAttrs    = []string{"cn", "member", "uniqueMember", "memberUid"}
)

// Sync binds and reads every user and group under the base DN.
func Sync(ctx context.Context, c Config) (Result, error) {
	if err := Check(c); err != nil {
		return Result{}, fmt.Errorf("ldap %s: %w", c.Source, err)
	}
	conn, err := connect(ctx, c)
	if err != nil {
		return Result{}, fmt.Errorf("ldap %s: %w", c.Source, err)
	}
	defer conn.Close()
	// go-ldap takes no context: closing the connection ends a request.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	userFilter, groupFilter := or(c.UserFilter, DefaultUserFilter), or(c.GroupFilter, DefaultGroupFilter)
	users, err := search(conn, c, userFilter, userAttrs)
	if err != nil {
		return Result{}, fmt.Errorf("ldap %s: users (%s): %w", c.Source, userFilter, ctxErr(ctx, err))
	}
	groups, err := search(conn, c, groupFilter, groupAttrs)
	if err != nil {
		return Result{}, fmt.Errorf("ldap %s: groups (%s): %w", c.Source, groupFilter, ctxErr(ctx, err))
	}
	return link(c.Source, users, groups), nil
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	return err
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func connect(ctx context.Context, c Config) (*goldap.Conn, error) {
	u, _ := url.Parse(c.URL)
	tc := &tls.Config{ServerName: u.Hostname(), InsecureSkipVerify: c.Insecure, MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s: no PEM certificate", c.CAFile)
		}
		tc.RootCAs = pool
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	if d, ok := ctx.Deadline(); ok && time.Until(d) < timeout {
		timeout = max(time.Until(d), time.Millisecond)
	}
	conn, err := goldap.DialURL(c.URL, goldap.DialWithDialer(&net.Dialer{Timeout: timeout}), goldap.DialWithTLSConfig(tc))
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", c.URL, err)
	}
	conn.SetTimeout(timeout)
	if c.StartTLS {
		if err := conn.StartTLS(tc); err != nil {
			conn.Close()
			return nil, fmt.Errorf("StartTLS with %s: %w", c.URL, err)
		}
	}
	if c.BindDN != "" {
		if err := conn.Bind(c.BindDN, c.Password); err != nil {
			conn.Close()
			return nil, fmt.Errorf("bind as %s: %w", c.BindDN, err)
		}
	}
	return conn, nil
}

func search(conn *goldap.Conn, c Config, filter string, attrs []string) ([]*goldap.Entry, error) {
	size := c.PageSize
	if size == 0 {
		size = DefaultPageSize
	}
	req := goldap.NewSearchRequest(c.BaseDN, goldap.ScopeWholeSubtree, goldap.NeverDerefAliases, 0, 0, false, filter, attrs, nil)
	res, err := conn.SearchWithPaging(req, size)
	if err != nil {
		return nil, err
	}
	return res.Entries, nil
}

// normDN is a DN's comparable form: attribute types and values compared
// without case, spaces around separators dropped.
func normDN(s string) string {
	dn, err := goldap.ParseDN(s)
	if err != nil {
		return strings.ToLower(strings.TrimSpace(s))
	}
	var b strings.Builder
	for i, rdn := range dn.RDNs {
		if i > 0 {
			b.WriteByte(',')
		}
		for j, a := range rdn.Attributes {
			if j > 0 {
				b.WriteByte('+')
			}
			b.WriteString(strings.ToLower(a.Type))
			b.WriteByte('=')
			b.WriteString(strings.ToLower(a.Value))
		}
	}
	return b.String()
}

// link names the users and groups and resolves each group's member DNs to
// a user or a group of this sync.
func link(source string, users, groups []*goldap.Entry) Result {
	var res Result
	userByDN := map[string]string{}
	userNames := map[string]bool{}
	for _, e := range users {
		name := ""
		for _, a := range userNameAttrs {
			if v := e.GetEqualFoldAttributeValue(a); v != "" {
				name = directory.Name(v)
				break
			}
		}
		if name == "" {
			res.Skipped = append(res.Skipped, fmt.Sprintf("user %s: no sAMAccountName, uid or cn", e.DN))
			continue
		}
		if userNames[name] {
			res.Skipped = append(res.Skipped, fmt.Sprintf("user %s: name %s is taken by another entry", e.DN, name))
			continue
		}
		userNames[name] = true
		userByDN[normDN(e.DN)] = name
		res.Users = append(res.Users, directory.User{Source: source, Name: name, DN: e.DN,
			Display: or(e.GetEqualFoldAttributeValue("displayName"), e.GetEqualFoldAttributeValue("cn"))})
	}
	groupByDN := map[string]string{}
	named := make([]string, len(groups))
	for i, e := range groups {
		named[i] = directory.Name(e.GetEqualFoldAttributeValue("cn"))
		if named[i] != "" {
			groupByDN[normDN(e.DN)] = named[i]
		}
	}
	for i, e := range groups {
		if named[i] == "" {
			res.Skipped = append(res.Skipped, fmt.Sprintf("group %s: no cn", e.DN))
			continue
		}
		g := directory.Group{Source: source, Name: named[i], DN: e.DN}
		for _, m := range slices.Concat(e.GetEqualFoldAttributeValues("member"), e.GetEqualFoldAttributeValues("uniqueMember")) {
			// groupOfUniqueNames may append "#'0101'B" (a UID) to the DN.
			if i := strings.LastIndex(m, "#'"); i > 0 {
				m = m[:i]
			}
			n := normDN(m)
			switch {
			case userByDN[n] != "":
				g.Users = append(g.Users, userByDN[n])
			case groupByDN[n] != "":
				g.Groups = append(g.Groups, groupByDN[n])
			default:
				res.Skipped = append(res.Skipped, fmt.Sprintf("group %s: member %s is not a synced user or group", g.Name, m))
			}
		}
		for _, m := range e.GetEqualFoldAttributeValues("memberUid") {
			g.Users = append(g.Users, directory.Name(m))
		}
		res.Groups = append(res.Groups, g)
	}
	return res
}
