package apps

import (
	"bufio"
	"bytes"
	"net"
	"testing"
	"time"
)

// FuzzLDAPMessage: the directory never panics on a hostile request.
func FuzzLDAPMessage(f *testing.F) {
	search := berSeq(berInt(2), berCons(berApplication, opSearchRequest,
		berOctets("dc=lab,dc=test"), berEnum(2), berEnum(0), berInt(0), berInt(0), berBool(false),
		berCons(berContext, 0, berCons(berContext, 3, berOctets("cn"), berOctets("hr")),
			berCons(berContext, 4, berOctets("cn"), berSeq(berTLV(berContext, false, 0, []byte("a")), berTLV(berContext, false, 2, []byte("e"))))),
		berSeq(berOctets("cn"))))
	bind := berSeq(berInt(1), berCons(berApplication, opBindRequest, berInt(3), berOctets("cn=admin,dc=lab,dc=test"), berTLV(berContext, false, 0, []byte("pw"))))
	f.Add(append(bind, search...))
	f.Add([]byte{0x30, 0x84, 0xff, 0xff, 0xff, 0xff})
	cfg := testDirectory()
	_, log := newLog()
	d := newDirectory(&cfg, log)
	f.Fuzz(func(t *testing.T, data []byte) {
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() { d.serve(server); server.Close(); close(done) }()
		go func() { client.Write(data); client.Close() }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("server stuck")
		}
	})
}

// FuzzSQL: the db answers every line with rows or an error, never a panic.
func FuzzSQL(f *testing.F) {
	for _, s := range []string{"SELECT * FROM products", "SELECT id FROM products WHERE name LIKE '%' OR '1'='1' --'",
		"INSERT INTO orders (product, qty) VALUES (3, 1)", "SELECT name FROM products WHERE price <= 9.5 AND stock > 3 LIMIT 2;"} {
		f.Add(s)
	}
	db := newDatabase()
	f.Fuzz(func(t *testing.T, sql string) {
		if len(sql) > 4096 {
			return
		}
		db.exec(sql)
	})
}

// FuzzRESP: command parsing is bounded and never panics.
func FuzzRESP(f *testing.F) {
	f.Add([]byte("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"))
	f.Add([]byte("PING\r\n"))
	f.Add([]byte("*99999999\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(bytes.NewReader(data))
		st := &store{m: map[string]entry{}, max: 10}
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		authed := false
		for range 64 {
			args, err := readRESP(r)
			if err != nil {
				return
			}
			if len(args) > 0 {
				st.command(w, args[0], args, &authed, "")
			}
		}
	})
}
