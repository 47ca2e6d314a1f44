package apps

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"
)

func startDB(t *testing.T) (string, *logBuf) {
	t.Helper()
	logs, log := newLog()
	cfg := DBConfig{Database: "shop", Users: map[string]string{"shop": "db-pw"}}
	return startServer(t, &cfg.Env, log, func(ctx context.Context) error { return RunDB(ctx, cfg) })["tcp"], logs
}

func TestDBProtocol(t *testing.T) {
	addr, logs := startDB(t)
	env := &Env{}
	if _, err := dialDB(context.Background(), env, addr, "shop", "wrong", time.Second); err == nil || !strings.Contains(err.Error(), "28000") {
		t.Fatalf("wrong password: %v, want ERR 28000", err)
	}
	d, err := dialDB(context.Background(), env, addr, "shop", "db-pw", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	tests := []struct {
		sql     string
		cols    string
		rows    []string
		errPart string
	}{
		{sql: "SELECT id, name FROM products WHERE id = 2", cols: "id|name", rows: []string{"2|Teapot"}},
		{sql: "select name from products where price < 8 and stock >= 100;", cols: "name", rows: []string{"Blue mug", "Espresso cup"}},
		{sql: "SELECT name FROM products WHERE name LIKE '%mug%' LIMIT 1", cols: "name", rows: []string{"Blue mug"}},
		// The injection the api lets through: the quote closes the string,
		// OR '1'='1' is true for every row, -- comments out the rest.
		{sql: "SELECT id FROM products WHERE name LIKE '%' OR '1'='1' --%'", cols: "id", rows: []string{"1", "2", "3", "4", "5", "6", "7", "8"}},
		{sql: "SELECT id FROM products WHERE name LIKE '%x'; DROP TABLE orders; --%'", errPart: "42601"},
		{sql: "SELECT password FROM users", errPart: "42P01"},
		{sql: "SELECT nope FROM products", errPart: "42703"},
		{sql: "SELECT * FROM products WHERE name = 'unterminated", errPart: "unterminated"},
		{sql: "DELETE FROM products", errPart: "42601"},
		{sql: "INSERT INTO orders (product, qty) VALUES (3, 2)"},
		{sql: "INSERT INTO products (name) VALUES ('free')", errPart: "42501"},
		{sql: "SELECT product, qty FROM orders", cols: "product|qty", rows: []string{"3|2"}},
	}
	for _, tt := range tests {
		cols, rows, err := d.query(tt.sql)
		if tt.errPart != "" {
			if err == nil || !strings.Contains(err.Error(), tt.errPart) {
				t.Errorf("%s: %v, want an error with %s", tt.sql, err, tt.errPart)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.sql, err)
			continue
		}
		var got []string
		for _, r := range rows {
			got = append(got, strings.Join(r, "|"))
		}
		if strings.Join(cols, "|") != tt.cols || !slices.Equal(got, tt.rows) {
			t.Errorf("%s:\n got %s %q\nwant %s %q", tt.sql, strings.Join(cols, "|"), got, tt.cols, tt.rows)
		}
	}
	logs.waitFor(t, time.Second, "msg=query", "user=shop", "rows=8")
	logs.waitFor(t, time.Second, "msg=auth", "ok=false")
}

func startCache(t *testing.T) (string, *logBuf) {
	t.Helper()
	logs, log := newLog()
	cfg := CacheConfig{Password: "cache-pw"}
	return startServer(t, &cfg.Env, log, func(ctx context.Context) error { return RunCache(ctx, cfg) })["tcp"], logs
}

func TestCacheRESP(t *testing.T) {
	addr, _ := startCache(t)
	if _, err := dialCache(context.Background(), &Env{}, addr, "nope", time.Second); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("wrong password: %v", err)
	}
	cc, err := dialCache(context.Background(), &Env{}, addr, "cache-pw", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.close()
	steps := []struct {
		args []string
		want string
	}{
		{[]string{"PING"}, "+PONG"},
		{[]string{"GET", "k"}, "$nil"},
		{[]string{"SET", "k", "v1", "EX", "60"}, "+OK"},
		{[]string{"GET", "k"}, "$v1"},
		{[]string{"TTL", "k"}, ":60"},
		{[]string{"INCR", "n"}, ":1"},
		{[]string{"INCR", "n"}, ":2"},
		{[]string{"INCR", "k"}, "-ERR value is not an integer or out of range"},
		{[]string{"EXISTS", "k", "n", "x"}, ":2"},
		{[]string{"DEL", "k"}, ":1"},
		{[]string{"SET", "k"}, "-ERR wrong number of arguments for 'set' command"},
		{[]string{"FLUSHALL"}, "-ERR unknown command 'flushall', with args beginning with: "},
	}
	for _, s := range steps {
		rep, err := cc.do(s.args...)
		if err != nil {
			t.Fatalf("%v: %v", s.args, err)
		}
		got := string(rep.Kind) + rep.Str
		switch {
		case rep.Nil:
			got = "$nil"
		case rep.Kind == ':':
			got = fmt.Sprintf(":%d", rep.Int)
		}
		if got != s.want {
			t.Errorf("%v: %q, want %q", s.args, got, s.want)
		}
	}
	// Inline commands, as `redis-cli` over telnet would send them.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "PING\r\nGET n\r\n")
	r := bufio.NewReader(c)
	for _, want := range []string{"+PONG", "-NOAUTH Authentication required."} {
		line, _ := readLine(r, 1024)
		if line != want {
			t.Errorf("inline: %q, want %q", line, want)
		}
	}
}

func testDirectory() LDAPConfig {
	cfg := LDAPConfig{AdminPassword: "dir-admin-pw",
		People: []LDAPPerson{{UID: "alice", Name: "Alice Archer", Password: "alice-pw"}, {UID: "bob", Password: "bob-pw"}},
		Groups: []LDAPGroup{{Name: "hr", Members: []string{"alice"}}, {Name: "finance", Members: []string{"bob"}}, {Name: "staff", Groups: []string{"hr", "finance"}}},
	}
	cfg.SetDefaults()
	cfg.Port = 0
	return cfg
}

func startLDAP(t *testing.T) (string, *logBuf) {
	t.Helper()
	logs, log := newLog()
	cfg := testDirectory()
	return startServer(t, &cfg.Env, log, func(ctx context.Context) error { return RunLDAP(ctx, cfg) })["tcp"], logs
}

// go-ldap, the client issue 7's directory sync uses, binds and searches.
func TestLDAPServer(t *testing.T) {
	addr, logs := startLDAP(t)
	l, err := ldap.DialURL("ldap://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// Anonymous: the root DSE only.
	res, err := l.Search(ldap.NewSearchRequest("", ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", []string{"namingContexts"}, nil))
	if err != nil || len(res.Entries) != 1 || res.Entries[0].GetAttributeValue("namingContexts") != "dc=lab,dc=test" {
		t.Fatalf("root DSE: %v %+v", err, res)
	}
	if _, err := l.Search(ldap.NewSearchRequest("dc=lab,dc=test", ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, "(uid=*)", nil, nil)); !ldap.IsErrorWithCode(err, ldap.LDAPResultInsufficientAccessRights) {
		t.Fatalf("anonymous search: %v, want insufficient access", err)
	}
	if err := l.Bind("uid=alice,ou=people,dc=lab,dc=test", "wrong"); !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
		t.Fatalf("wrong password: %v, want invalid credentials", err)
	}
	if err := l.Bind("UID=Alice, ou=People,dc=lab,dc=test", "alice-pw"); err != nil {
		t.Fatalf("alice: %v", err)
	}
	who, err := l.WhoAmI(nil)
	if err != nil || who.AuthzID != "dn:uid=alice,ou=people,dc=lab,dc=test" {
		t.Fatalf("whoami: %+v %v", who, err)
	}
	if err := l.Bind("cn=admin,dc=lab,dc=test", "dir-admin-pw"); err != nil {
		t.Fatalf("admin: %v", err)
	}
	tests := []struct {
		base, filter string
		scope        int
		want         []string
	}{
		{"dc=lab,dc=test", "(objectClass=inetOrgPerson)", ldap.ScopeWholeSubtree, []string{"uid=alice,ou=people,dc=lab,dc=test", "uid=bob,ou=people,dc=lab,dc=test"}},
		{"dc=lab,dc=test", "(&(objectClass=groupOfNames)(cn=hr))", ldap.ScopeWholeSubtree, []string{"cn=hr,ou=groups,dc=lab,dc=test"}},
		{"dc=lab,dc=test", "(memberOf=CN=staff,ou=groups,dc=lab,dc=test)", ldap.ScopeWholeSubtree, []string{"cn=hr,ou=groups,dc=lab,dc=test", "cn=finance,ou=groups,dc=lab,dc=test"}},
		{"dc=lab,dc=test", "(member=uid=alice,ou=people,dc=lab,dc=test)", ldap.ScopeWholeSubtree, []string{"cn=hr,ou=groups,dc=lab,dc=test"}},
		{"dc=lab,dc=test", "(cn=Ali*cher)", ldap.ScopeWholeSubtree, []string{"uid=alice,ou=people,dc=lab,dc=test"}},
		{"dc=lab,dc=test", "(|(uid=bob)(!(objectClass=*)))", ldap.ScopeWholeSubtree, []string{"uid=bob,ou=people,dc=lab,dc=test"}},
		{"ou=groups,dc=lab,dc=test", "(objectClass=*)", ldap.ScopeSingleLevel, []string{"cn=hr,ou=groups,dc=lab,dc=test", "cn=finance,ou=groups,dc=lab,dc=test", "cn=staff,ou=groups,dc=lab,dc=test"}},
		{"ou=groups,dc=lab,dc=test", "(objectClass=*)", ldap.ScopeBaseObject, []string{"ou=groups,dc=lab,dc=test"}},
	}
	for _, tt := range tests {
		res, err := l.SearchWithPaging(ldap.NewSearchRequest(tt.base, tt.scope, ldap.NeverDerefAliases, 0, 0, false, tt.filter, []string{"cn", "member", "memberOf"}, nil), 10)
		if err != nil {
			t.Errorf("%s: %v", tt.filter, err)
			continue
		}
		var got []string
		for _, e := range res.Entries {
			got = append(got, e.DN)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s under %s:\n got %q\nwant %q", tt.filter, tt.base, got, tt.want)
		}
	}
	if _, err := l.Search(ldap.NewSearchRequest("ou=nowhere,dc=lab,dc=test", ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", nil, nil)); !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
		t.Errorf("search under a missing base: %v", err)
	}
	if err := l.Add(ldap.NewAddRequest("uid=mallory,ou=people,dc=lab,dc=test", nil)); !ldap.IsErrorWithCode(err, ldap.LDAPResultUnwillingToPerform) {
		t.Errorf("add: %v, want unwilling to perform", err)
	}
	logs.waitFor(t, time.Second, "msg=bind", "dn=\"cn=admin,dc=lab,dc=test\"", "ok=true")
	logs.waitFor(t, time.Second, "msg=search", "filter=\"(&(objectClass=groupOfNames)(cn=hr))\"", "entries=1")
}

// The full shop: a shopper browses the web tier, which reads products from
// the api, which reads the cache and the db; login goes to the directory;
// a partner calls the api over cleartext HTTP/2.
func TestShopStack(t *testing.T) {
	dbAddr, dbLog := startDB(t)
	cacheAddr, cacheLog := startCache(t)
	ldapAddr, ldapLog := startLDAP(t)
	apiLogs, apiLog := newLog()
	api := APIConfig{DB: dbAddr, DBUser: "shop", DBPassword: "db-pw", Cache: cacheAddr, CachePassword: "cache-pw", H2C: true}
	apiAddr := startServer(t, &api.Env, apiLog, func(ctx context.Context) error { return RunAPI(ctx, api) })["tcp"]
	webLogs, webLog := newLog()
	web := HTTPConfig{API: apiAddr, Directory: &DirectoryLogin{Server: ldapAddr, UserDN: "uid=%s,ou=people,dc=lab,dc=test"}}
	webAddr := startServer(t, &web.Env, webLog, func(ctx context.Context) error { return RunHTTP(ctx, web) })["tcp"]

	shopLogs, shopLog := newLog()
	shopper := ShopperConfig{Pace: Pace{Interval: Duration(20 * time.Millisecond), Count: 3, Timeout: Duration(5 * time.Second)},
		URLs: []string{"http://" + webAddr + "/"}, Pages: 3, User: "alice", Password: "alice-pw"}
	shopper.SetDefaults()
	shopper.Log = shopLog
	runClient(t, 60*time.Second, func(ctx context.Context) error { return RunShopper(ctx, shopper) })
	shopLogs.waitFor(t, time.Second, "msg=http", "status=200")
	webLogs.waitFor(t, time.Second, "msg=request", "uri=/static/style.css")
	apiLogs.waitFor(t, time.Second, "msg=request", "uri=/api/products", "status=200")
	dbLog.waitFor(t, time.Second, "msg=query", "SELECT id, name, price, stock FROM products")
	cacheLog.waitFor(t, time.Second, "msg=command", "cmd=GET", "key=products:all")
	// The first visit logs in: the web tier binds to the directory as alice.
	shopLogs.waitFor(t, time.Second, "msg=http", "method=POST", "/login")
	webLogs.waitFor(t, time.Second, "msg=login", "user=alice", "ok=true", "via=ldap")
	ldapLog.waitFor(t, time.Second, "msg=bind", "uid=alice", "ok=true")

	callerLogs, callerLog := newLog()
	caller := APICallerConfig{Pace: Pace{Interval: Duration(20 * time.Millisecond), Count: 5, Timeout: Duration(5 * time.Second)},
		Base: "http://" + apiAddr, Paths: []string{"/api/products/2", "/api/search?q=mug", "POST /api/orders"}, H2C: true}
	caller.SetDefaults()
	caller.Log = callerLog
	runClient(t, 30*time.Second, func(ctx context.Context) error { return RunAPICaller(ctx, caller) })
	callerLogs.waitFor(t, time.Second, "msg=request", "proto=HTTP/2.0")
	apiLogs.waitFor(t, time.Second, "msg=request", "proto=HTTP/2.0", "ua=shop-partner/2.3")

	// The injection travels from the web tier to the db.
	resp, err := (&Env{}).dialer(time.Second).Dial("tcp", webAddr)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(resp, "GET /search?q=%%27+OR+%%271%%27%%3D%%271%%27+--+ HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n")
	bufio.NewReader(resp).ReadString(0)
	resp.Close()
	dbLog.waitFor(t, time.Second, "msg=query", "LIKE '%' OR '1'='1' -- %'", "rows=8")
}

func TestLike(t *testing.T) {
	for _, c := range []struct {
		s, pat string
		want   bool
	}{
		{"blue mug", "%mug%", true}, {"blue mug", "%mug", true}, {"blue mug", "blue%", true},
		{"blue mug", "b_ue mug", true}, {"blue mug", "%x%", false}, {"", "%", true}, {"", "", true},
		{"a", "", false}, {"abc", "a%c%", true}, {"abc", "a%b", false}, {"mississippi", "%sip%i", true},
		{"coffee grinder", strings.Repeat("%", 200) + "z", false},
	} {
		if got := like(c.s, c.pat); got != c.want {
			t.Errorf("like(%q, %q) = %v", c.s, c.pat, got)
		}
	}
}
