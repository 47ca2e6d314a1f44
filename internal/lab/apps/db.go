package apps

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The db speaks "BulkSQL", a line protocol (CRLF) made for the lab:
//
//	S: HELLO bulksql/1.0 db=shop
//	C: AUTH app s3cret                 S: OK welcome app   | ERR 28000 access denied
//	C: SELECT id, name FROM products WHERE price < 10 LIMIT 2
//	S: COLS id|name
//	S: ROW 1|Blue mug
//	S: ROW 2|Teapot
//	S: DONE 2 rows
//	C: INSERT INTO orders (product, qty) VALUES (3, 1)
//	S: DONE 1 row inserted
//	C: PING                            S: PONG
//	C: QUIT                            S: BYE
//
// Errors are "ERR <sqlstate> <message>". A query may end with ";", and "--"
// starts a comment, as in SQL, so injected text behaves as it would.

// Product is one item of the shop's catalog.
type Product struct {
	ID    int     `json:"id"`
	Name  string  `json:"name"`
	Price float64 `json:"price"`
	Stock int     `json:"stock"`
}

var catalog = []Product{
	{1, "Blue mug", 7.5, 120},
	{2, "Teapot", 24, 30},
	{3, "Red mug", 7.5, 80},
	{4, "Kettle", 39.9, 12},
	{5, "Coffee grinder", 59, 7},
	{6, "Tea cosy", 12, 40},
	{7, "Espresso cup", 5.5, 200},
	{8, "Milk jug", 9, 55},
}

// DBConfig is the SQL-like database ("db").
type DBConfig struct {
	Env `yaml:"-"`
	// Port to listen on; 0 picks a free one. Default 5432.
	Port int `json:"port" yaml:"port"`
	// Database is the name in the greeting. Default "shop".
	Database string `json:"database,omitempty" yaml:"database"`
	// Users (name: password) may log in with AUTH; empty: no login needed.
	Users map[string]string `json:"users,omitempty" yaml:"users"`
}

// SetDefaults fills in port 5432 and the database name.
func (c *DBConfig) SetDefaults() {
	if c.Port == 0 {
		c.Port = 5432
	}
	if c.Database == "" {
		c.Database = "shop"
	}
}

// Validate checks the configuration.
func (c DBConfig) Validate() error { return checkPort("port", c.Port) }

// table is one table of the db; rows are strings as they go on the wire.
type table struct {
	cols []string
	rows [][]string
}

type database struct {
	mu     sync.Mutex
	tables map[string]*table
	nextID int
}

const maxOrders = 1000

func newDatabase() *database {
	db := &database{tables: map[string]*table{}, nextID: 1}
	p := &table{cols: []string{"id", "name", "price", "stock"}}
	for _, x := range catalog {
		p.rows = append(p.rows, []string{strconv.Itoa(x.ID), x.Name, strconv.FormatFloat(x.Price, 'f', 2, 64), strconv.Itoa(x.Stock)})
	}
	db.tables["products"] = p
	db.tables["customers"] = &table{cols: []string{"id", "name", "email", "city"}, rows: [][]string{
		{"1", "Ada Lovelace", "ada@example.test", "London"},
		{"2", "Grace Hopper", "grace@example.test", "Arlington"},
		{"3", "Alan Turing", "alan@example.test", "Wilmslow"},
	}}
	db.tables["orders"] = &table{cols: []string{"id", "product", "qty", "created"}}
	return db
}

// RunDB serves the SQL-like protocol until ctx is cancelled.
func RunDB(ctx context.Context, cfg DBConfig) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("db: %w", err)
	}
	ln, err := cfg.listen(ctx, cfg.Port)
	if err != nil {
		return fmt.Errorf("db: %w", err)
	}
	log := cfg.log().With("server", "db")
	log.Info("listening", "addr", ln.Addr().String())
	db := newDatabase()
	name := cfg.Database
	if name == "" {
		name = "shop"
	}
	return serveConns(ctx, ln, func(ctx context.Context, c net.Conn) {
		remote := c.RemoteAddr().String()
		w := bufio.NewWriter(c)
		r := bufio.NewReaderSize(c, 4096)
		reply := func(format string, args ...any) bool {
			fmt.Fprintf(w, format+"\r\n", args...)
			return w.Flush() == nil
		}
		if !reply("HELLO bulksql/1.0 db=%s", name) {
			return
		}
		user := ""
		authed := len(cfg.Users) == 0
		failures := 0
		for {
			c.SetReadDeadline(time.Now().Add(2 * time.Minute))
			line, err := readLine(r, 64<<10)
			if err != nil {
				return
			}
			verb, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
			switch strings.ToUpper(verb) {
			case "":
				continue
			case "AUTH":
				u, pw, _ := strings.Cut(strings.TrimSpace(rest), " ")
				if want, ok := cfg.Users[u]; ok && want == pw && len(cfg.Users) > 0 {
					authed, user = true, u
					log.Info("auth", "user", u, "ok", true, "remote", remote)
					reply("OK welcome %s", u)
					continue
				}
				failures++
				log.Info("auth", "user", u, "ok", false, "remote", remote)
				reply("ERR 28000 access denied for user %q", u)
				if failures >= 3 {
					return
				}
			case "PING":
				reply("PONG")
			case "QUIT":
				reply("BYE")
				return
			default:
				if !authed {
					reply("ERR 28000 not authenticated")
					continue
				}
				res, err := db.exec(line)
				if err != nil {
					log.Info("query", "user", user, "sql", line, "err", err.Error(), "remote", remote)
					reply("ERR %s", err.Error())
					continue
				}
				log.Info("query", "user", user, "sql", line, "rows", len(res.rows), "remote", remote)
				if res.cols == nil {
					reply("DONE %d row inserted", res.affected)
					continue
				}
				fmt.Fprintf(w, "COLS %s\r\n", strings.Join(res.cols, "|"))
				for _, row := range res.rows {
					fmt.Fprintf(w, "ROW %s\r\n", strings.Join(row, "|"))
				}
				reply("DONE %d rows", len(res.rows))
			}
		}
	})
}

// readLine reads one line of at most max bytes, without its CR LF.
func readLine(r *bufio.Reader, limit int) (string, error) {
	var b []byte
	for {
		chunk, isPrefix, err := r.ReadLine()
		if err != nil {
			return "", err
		}
		b = append(b, chunk...)
		if len(b) > limit {
			return "", errors.New("line too long")
		}
		if !isPrefix {
			return string(b), nil
		}
	}
}

type result struct {
	cols     []string
	rows     [][]string
	affected int
}

// sqlError is an error with an SQLSTATE code, printed "42601 message".
type sqlError struct{ state, msg string }

func (e *sqlError) Error() string { return e.state + " " + e.msg }

func syntaxErr(near string) error {
	if near == "" {
		return &sqlError{"42601", "syntax error at end of input"}
	}
	return &sqlError{"42601", fmt.Sprintf("syntax error at or near %q", near)}
}

func (db *database) exec(sql string) (*result, error) {
	toks, err := lexSQL(sql)
	if err != nil {
		return nil, err
	}
	p := &sqlParser{toks: toks}
	switch {
	case p.keyword("SELECT"):
		return db.sel(p)
	case p.keyword("INSERT"):
		return db.insert(p)
	}
	return nil, syntaxErr(p.peek().text)
}

type sqlTok struct {
	kind byte // 'w' word, 'n' number, 's' string, 'p' punctuation, 0 end
	text string
}

func lexSQL(s string) ([]sqlTok, error) {
	var toks []sqlTok
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			i++
		case c == '-' && i+1 < len(s) && s[i+1] == '-':
			i = len(s) // comment to end of line
		case c == '\'':
			var b strings.Builder
			j := i + 1
			for ; j < len(s); j++ {
				if s[j] == '\'' {
					if j+1 < len(s) && s[j+1] == '\'' {
						b.WriteByte('\'')
						j++
						continue
					}
					break
				}
				b.WriteByte(s[j])
			}
			if j >= len(s) {
				return nil, &sqlError{"42601", "unterminated quoted string at or near " + strconv.Quote(s[i:])}
			}
			toks = append(toks, sqlTok{'s', b.String()})
			i = j + 1
		case c >= '0' && c <= '9':
			j := i
			for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '.') {
				j++
			}
			toks = append(toks, sqlTok{'n', s[i:j]})
			i = j
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			j := i
			for j < len(s) && (s[j] == '_' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= '0' && s[j] <= '9') {
				j++
			}
			toks = append(toks, sqlTok{'w', s[i:j]})
			i = j
		case c == '<' || c == '>' || c == '!':
			if i+1 < len(s) && s[i+1] == '=' {
				toks = append(toks, sqlTok{'p', s[i : i+2]})
				i += 2
			} else {
				toks = append(toks, sqlTok{'p', s[i : i+1]})
				i++
			}
		case strings.IndexByte("(),*=;", c) >= 0:
			toks = append(toks, sqlTok{'p', s[i : i+1]})
			i++
		default:
			return nil, syntaxErr(s[i : i+1])
		}
	}
	return toks, nil
}

type sqlParser struct {
	toks []sqlTok
	i    int
}

func (p *sqlParser) peek() sqlTok {
	if p.i < len(p.toks) {
		return p.toks[p.i]
	}
	return sqlTok{}
}

func (p *sqlParser) next() sqlTok { t := p.peek(); p.i++; return t }

func (p *sqlParser) keyword(k string) bool {
	if t := p.peek(); t.kind == 'w' && strings.EqualFold(t.text, k) {
		p.i++
		return true
	}
	return false
}

func (p *sqlParser) punct(s string) bool {
	if t := p.peek(); t.kind == 'p' && t.text == s {
		p.i++
		return true
	}
	return false
}

func (p *sqlParser) end() error {
	p.punct(";")
	if p.i < len(p.toks) {
		return syntaxErr(p.peek().text)
	}
	return nil
}

func (p *sqlParser) ident() (string, error) {
	t := p.next()
	if t.kind != 'w' {
		return "", syntaxErr(t.text)
	}
	return strings.ToLower(t.text), nil
}

// cond is one comparison; operands are column names or literals.
type cond struct {
	op          string
	left, right sqlTok
}

func (db *database) sel(p *sqlParser) (*result, error) {
	var cols []string
	if !p.punct("*") {
		for {
			c, err := p.ident()
			if err != nil {
				return nil, err
			}
			cols = append(cols, c)
			if !p.punct(",") {
				break
			}
		}
	}
	if !p.keyword("FROM") {
		return nil, syntaxErr(p.peek().text)
	}
	name, err := p.ident()
	if err != nil {
		return nil, err
	}
	// where is a disjunction of conjunctions: OR of ANDs.
	var where [][]cond
	if p.keyword("WHERE") {
		conj := []cond{}
		for {
			c, err := p.cond()
			if err != nil {
				return nil, err
			}
			conj = append(conj, c)
			if p.keyword("AND") {
				continue
			}
			if p.keyword("OR") {
				where = append(where, conj)
				conj = []cond{}
				continue
			}
			break
		}
		where = append(where, conj)
	}
	limit := -1
	if p.keyword("LIMIT") {
		t := p.next()
		n, err := strconv.Atoi(t.text)
		if t.kind != 'n' || err != nil {
			return nil, syntaxErr(t.text)
		}
		limit = n
	}
	if err := p.end(); err != nil {
		return nil, err
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	t, ok := db.tables[name]
	if !ok {
		return nil, &sqlError{"42P01", fmt.Sprintf("relation %q does not exist", name)}
	}
	idx := map[string]int{}
	for i, c := range t.cols {
		idx[c] = i
	}
	if cols == nil {
		cols = t.cols
	}
	for _, c := range cols {
		if _, ok := idx[c]; !ok {
			return nil, &sqlError{"42703", fmt.Sprintf("column %q does not exist", c)}
		}
	}
	res := &result{cols: cols, rows: [][]string{}}
	for _, row := range t.rows {
		if limit >= 0 && len(res.rows) >= limit {
			break
		}
		match, err := evalWhere(where, idx, row)
		if err != nil {
			return nil, err
		}
		if !match {
			continue
		}
		out := make([]string, len(cols))
		for i, c := range cols {
			out[i] = row[idx[c]]
		}
		res.rows = append(res.rows, out)
	}
	return res, nil
}

func (p *sqlParser) operand() (sqlTok, error) {
	t := p.next()
	if t.kind == 'w' || t.kind == 'n' || t.kind == 's' {
		t.text = strings.Clone(t.text)
		return t, nil
	}
	return t, syntaxErr(t.text)
}

func (p *sqlParser) cond() (cond, error) {
	l, err := p.operand()
	if err != nil {
		return cond{}, err
	}
	var op string
	switch t := p.next(); {
	case t.kind == 'p' && (t.text == "=" || t.text == "<" || t.text == ">" || t.text == "<=" || t.text == ">=" || t.text == "!="):
		op = t.text
	case t.kind == 'w' && strings.EqualFold(t.text, "LIKE"):
		op = "LIKE"
	default:
		return cond{}, syntaxErr(t.text)
	}
	r, err := p.operand()
	if err != nil {
		return cond{}, err
	}
	return cond{op: op, left: l, right: r}, nil
}

func evalWhere(where [][]cond, idx map[string]int, row []string) (bool, error) {
	if len(where) == 0 {
		return true, nil
	}
	val := func(t sqlTok) (string, error) {
		if t.kind != 'w' {
			return t.text, nil
		}
		i, ok := idx[strings.ToLower(t.text)]
		if !ok {
			return "", &sqlError{"42703", fmt.Sprintf("column %q does not exist", t.text)}
		}
		return row[i], nil
	}
	for _, conj := range where {
		all := true
		for _, c := range conj {
			l, err := val(c.left)
			if err != nil {
				return false, err
			}
			r, err := val(c.right)
			if err != nil {
				return false, err
			}
			if !compare(c.op, l, r) {
				all = false
				break
			}
		}
		if all {
			return true, nil
		}
	}
	return false, nil
}

func compare(op, l, r string) bool {
	if op == "LIKE" {
		return like(strings.ToLower(l), strings.ToLower(r))
	}
	cmp := strings.Compare(l, r)
	if a, err1 := strconv.ParseFloat(l, 64); err1 == nil {
		if b, err2 := strconv.ParseFloat(r, 64); err2 == nil {
			cmp = 0
			if a < b {
				cmp = -1
			} else if a > b {
				cmp = 1
			}
		}
	}
	switch op {
	case "=":
		return cmp == 0
	case "!=":
		return cmp != 0
	case "<":
		return cmp < 0
	case ">":
		return cmp > 0
	case "<=":
		return cmp <= 0
	case ">=":
		return cmp >= 0
	}
	return false
}

// like matches SQL LIKE patterns with % and _, in O(len(s)*len(pat)):
// a pattern of many %s from a hostile client cannot make it backtrack
// exponentially.
func like(s, pat string) bool {
	si, pi := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case pi < len(pat) && (pat[pi] == '_' || pat[pi] == s[si]):
			si++
			pi++
		case pi < len(pat) && pat[pi] == '%':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(pat) && pat[pi] == '%' {
		pi++
	}
	return pi == len(pat)
}

func (db *database) insert(p *sqlParser) (*result, error) {
	if !p.keyword("INTO") {
		return nil, syntaxErr(p.peek().text)
	}
	name, err := p.ident()
	if err != nil {
		return nil, err
	}
	var cols []string
	if p.punct("(") {
		for {
			c, err := p.ident()
			if err != nil {
				return nil, err
			}
			cols = append(cols, c)
			if !p.punct(",") {
				break
			}
		}
		if !p.punct(")") {
			return nil, syntaxErr(p.peek().text)
		}
	}
	if !p.keyword("VALUES") || !p.punct("(") {
		return nil, syntaxErr(p.peek().text)
	}
	var vals []string
	for {
		t, err := p.operand()
		if err != nil || t.kind == 'w' {
			return nil, syntaxErr(t.text)
		}
		vals = append(vals, t.text)
		if !p.punct(",") {
			break
		}
	}
	if !p.punct(")") {
		return nil, syntaxErr(p.peek().text)
	}
	if err := p.end(); err != nil {
		return nil, err
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	t, ok := db.tables[name]
	if !ok {
		return nil, &sqlError{"42P01", fmt.Sprintf("relation %q does not exist", name)}
	}
	if name != "orders" {
		return nil, &sqlError{"42501", fmt.Sprintf("permission denied for table %s", name)}
	}
	if cols == nil {
		cols = t.cols[1 : 1+min(len(vals), len(t.cols)-1)]
	}
	if len(cols) != len(vals) {
		return nil, &sqlError{"42601", "INSERT has more expressions than target columns"}
	}
	row := make([]string, len(t.cols))
	row[0] = strconv.Itoa(db.nextID)
	row[len(row)-1] = time.Now().UTC().Format(time.RFC3339)
	for i, c := range cols {
		j := slices.Index(t.cols, c)
		if j < 0 {
			return nil, &sqlError{"42703", fmt.Sprintf("column %q does not exist", c)}
		}
		row[j] = vals[i]
	}
	db.nextID++
	t.rows = append(t.rows, row)
	if len(t.rows) > maxOrders {
		t.rows = t.rows[len(t.rows)-maxOrders:]
	}
	return &result{affected: 1}, nil
}

// dbConn is a client connection to the db.
type dbConn struct {
	c net.Conn
	r *bufio.Reader
}

// dialDB connects to the db at addr and logs in if user is set.
func dialDB(ctx context.Context, env *Env, addr, user, pw string, timeout time.Duration) (*dbConn, error) {
	c, err := env.dialer(timeout).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(timeout))
	d := &dbConn{c: c, r: bufio.NewReader(c)}
	hello, err := readLine(d.r, 4096)
	if err != nil || !strings.HasPrefix(hello, "HELLO ") {
		c.Close()
		return nil, fmt.Errorf("db %s: bad greeting %q: %v", addr, hello, err)
	}
	if user != "" {
		line, err := d.cmd("AUTH " + user + " " + pw)
		if err != nil {
			c.Close()
			return nil, err
		}
		if !strings.HasPrefix(line, "OK") {
			c.Close()
			return nil, fmt.Errorf("db %s: %s", addr, line)
		}
	}
	return d, nil
}

func (d *dbConn) cmd(line string) (string, error) {
	if _, err := fmt.Fprintf(d.c, "%s\r\n", line); err != nil {
		return "", err
	}
	return readLine(d.r, 64<<10)
}

// query runs sql and returns the columns and rows, or the server's error.
func (d *dbConn) query(sql string) ([]string, [][]string, error) {
	line, err := d.cmd(sql)
	if err != nil {
		return nil, nil, err
	}
	var cols []string
	var rows [][]string
	for n := 0; ; n++ {
		switch {
		case strings.HasPrefix(line, "ERR "):
			return nil, nil, errors.New("db: " + line[4:])
		case strings.HasPrefix(line, "DONE"):
			return cols, rows, nil
		case strings.HasPrefix(line, "COLS "):
			cols = strings.Split(line[5:], "|")
		case strings.HasPrefix(line, "ROW "):
			rows = append(rows, strings.Split(line[4:], "|"))
		default:
			return nil, nil, fmt.Errorf("db: unexpected %q", line)
		}
		if n > 100000 {
			return nil, nil, errors.New("db: too many rows")
		}
		if line, err = readLine(d.r, 64<<10); err != nil {
			return nil, nil, err
		}
	}
}

func (d *dbConn) close() {
	fmt.Fprintf(d.c, "QUIT\r\n")
	d.c.Close()
}

// DBClientConfig runs queries against the db ("db-client"): a reporting job.
type DBClientConfig struct {
	Env  `yaml:"-"`
	Pace `yaml:",inline"`
	// Target is the db, "HOST:PORT".
	Target   string   `json:"target" yaml:"target"`
	User     string   `json:"user,omitempty" yaml:"user"`
	Password string   `json:"password,omitempty" yaml:"password"`
	Queries  []string `json:"queries" yaml:"queries"`
}

// SetDefaults paces the job at one round every 10s and gives it queries.
func (c *DBClientConfig) SetDefaults() {
	c.Pace.setDefaults(10 * time.Second)
	if len(c.Queries) == 0 {
		c.Queries = []string{"SELECT id, name, stock FROM products WHERE stock < 20", "SELECT * FROM orders LIMIT 10"}
	}
}

// Validate checks the configuration.
func (c DBClientConfig) Validate() error {
	errs := []error{c.Pace.validate(), checkHostPort("target", c.Target)}
	if len(c.Queries) == 0 {
		errs = append(errs, fieldErr("queries", "at least one query"))
	}
	return joinNonNil(errs)
}

// Refs returns the target.
func (c *DBClientConfig) Refs() []*string { return []*string{&c.Target} }

// RunDBClient connects once per round and runs every query.
func RunDBClient(ctx context.Context, cfg DBClientConfig) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("db-client: %w", err)
	}
	log := cfg.log().With("client", "db-client")
	return cfg.Pace.loop(ctx, func(ctx context.Context, _ int) {
		ctx, cancel := context.WithTimeout(ctx, cfg.timeout())
		defer cancel()
		d, err := dialDB(ctx, &cfg.Env, cfg.Target, cfg.User, cfg.Password, cfg.timeout())
		if err != nil {
			failed(ctx, log, "connect", "target", cfg.Target, "err", err)
			return
		}
		defer d.close()
		for _, q := range cfg.Queries {
			_, rows, err := d.query(q)
			if err != nil {
				failed(ctx, log, "query", "target", cfg.Target, "sql", q, "err", err)
				continue
			}
			log.Info("query", "target", cfg.Target, "sql", q, "rows", len(rows))
		}
	})
}
