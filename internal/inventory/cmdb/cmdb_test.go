package cmdb

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/inventory"
)

var now = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func parseFile(t *testing.T, path string, o Options) *Result {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	o.Now = now
	res, err := Parse(data, o)
	if err != nil {
		t.Fatalf("Parse(%s): %v", path, err)
	}
	return res
}

func byName(recs []inventory.Record) map[string]inventory.Record {
	m := map[string]inventory.Record{}
	for _, r := range recs {
		m[r.Name] = r
	}
	return m
}

type wantBad struct {
	line   int
	record int
	reason string
}

func checkBad(t *testing.T, got []BadRow, want []wantBad) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("bad rows:\n%v\nwant %d", got, len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Line != w.line || g.Record != w.record || !strings.Contains(g.Reason, w.reason) {
			t.Errorf("bad row %d = %s; want line %d record %d with %q", i, g, w.line, w.record, w.reason)
		}
	}
}

func TestServiceNowCSV(t *testing.T) {
	res := parseFile(t, "testdata/servicenow_messy.csv", Options{})
	if res.Format != "csv" || res.Rows != 9 {
		t.Errorf("format %s, rows %d", res.Format, res.Rows)
	}
	checkBad(t, res.Bad, []wantBad{
		{4, 0, "no name (column name is empty)"},
		{5, 0, `column ip_address: bad IP address "10.10.3.300"`},
		{6, 0, `column sys_updated_on: bad date "21/04/2026"`},
		{7, 0, "3 columns, the header has 10"},
		{10, 0, `duplicate key "a1b2c9" (column sys_id), first on line 8`},
	})
	got := byName(res.Records)
	if len(got) != 4 {
		t.Fatalf("records: %+v", res.Records)
	}
	web := got["web-01"]
	if web.Key != "a1b2c3" || !slices.Equal(web.IPs, []string{"10.10.1.10"}) || web.Tags["app"] != "shop" || web.Tags["tier"] != "web" ||
		web.Attrs["owner"] != "Alice Smith" || web.Attrs["os"] != "Linux Red Hat" || web.Attrs["location"] != "DC East" ||
		!web.Observed.Equal(time.Date(2026, 4, 20, 8, 15, 0, 0, time.UTC)) || web.Source != "cmdb" || web.Kind != inventory.KindCMDB {
		t.Errorf("web-01 = %+v", web)
	}
	if ips := got["web-02"].IPs; !slices.Equal(ips, []string{"10.10.1.11", "10.10.1.12"}) {
		t.Errorf("web-02 IPs %v", ips)
	}
	app := got["app-01"]
	if !slices.Equal(app.IPs, []string{"10.10.2.10", "fd00:10::10"}) || app.Attrs["location"] != "DC\nWest" {
		t.Errorf("app-01 = %+v", app)
	}
	if l := got["legacy-01"]; len(l.IPs) != 0 || l.Tags["app"] != "crm" || l.Observed.Year() != 2019 {
		t.Errorf("legacy-01 = %+v", l)
	}
}

func TestServiceNowJSON(t *testing.T) {
	res := parseFile(t, "testdata/servicenow_messy.json", Options{Source: "snow"})
	if res.Format != "json" || res.Rows != 6 {
		t.Errorf("format %s, rows %d", res.Format, res.Rows)
	}
	checkBad(t, res.Bad, []wantBad{
		{12, 2, `bad date "yesterday"`},
		{18, 3, "not an object"},
		{19, 4, "no name"},
		{24, 5, `bad IP address "42"`},
		{25, 6, "column u_tier: an array is not a cell value"},
	})
	if len(res.Records) != 1 {
		t.Fatalf("records %+v", res.Records)
	}
	r := res.Records[0]
	if r.Name != "web-01" || r.Source != "snow" || r.Attrs["owner"] != "Alice Smith" || r.Tags["env"] != "prod" ||
		!r.Observed.Equal(time.Date(2026, 4, 20, 8, 15, 0, 0, time.UTC)) {
		t.Errorf("record %+v", r)
	}
}

func TestMapping(t *testing.T) {
	m, err := ParseMapping("name=u_hostname, ip=addr,tag.app=u_app,owner=,site=u_site")
	if err != nil {
		t.Fatal(err)
	}
	data := "U_Hostname,addr,u_app,owned_by,u_site\nweb-1,10.0.0.1,shop,alice,fra\n"
	res, err := Parse([]byte(data), Options{Mapping: m, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	r := res.Records[0]
	if r.Name != "web-1" || r.Key != "web-1" || r.Tags["app"] != "shop" || r.Attrs["site"] != "fra" || r.Attrs["owner"] != "" || !r.Observed.Equal(now) {
		t.Errorf("record %+v", r)
	}

	for _, bad := range []string{"name", "tag.9x=col", "=col"} {
		if _, err := ParseMapping(bad); err == nil {
			t.Errorf("ParseMapping(%q) accepted", bad)
		}
	}
}

func TestWholeFileErrors(t *testing.T) {
	for _, tc := range []struct {
		name, data, want string
		o                Options
	}{
		{"no name column", "host,ip_address\na,10.0.0.1\n", `no column "name" for name; the columns are host, ip_address`, Options{}},
		{"explicit column missing", "name\na\n", `no column "u_app" for tag.app`, Options{Mapping: map[string]string{"tag.app": "u_app"}}},
		{"empty", "", "no header line", Options{}},
		{"broken json", "{\"result\": [\n{\"name\": \"a\"},\n{\"name\": }\n]}", "line 3", Options{}},
		{"truncated json", "[{\"name\": \"a\"}", "unexpected end of file", Options{}},
		{"json not records", `{"foo": 1}`, `"result" or "records"`, Options{}},
		{"unknown format", "x", `format "xml"`, Options{Format: "xml"}},
		{"duplicate header", "name,Name\na,b\n", `column "name" appears twice`, Options{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.data), tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v; want %q", err, tc.want)
			}
		})
	}
}

func TestJSONRecordsArray(t *testing.T) {
	res, err := Parse([]byte(`{"records":[{"name":"a","ip_address":"10.0.0.1"}]}`), Options{Now: now})
	if err != nil || len(res.Records) != 1 || res.Records[0].IPs[0] != "10.0.0.1" {
		t.Fatalf("%+v %v", res, err)
	}
	res, err = Parse([]byte(`[{"name":"a"},{"name":"b","sys_id":"x"}]`), Options{Format: "json", Now: now})
	if err != nil || len(res.Records) != 2 {
		t.Fatalf("%+v %v", res, err)
	}
}

func FuzzParse(f *testing.F) {
	for _, p := range []string{"testdata/servicenow_messy.csv", "testdata/servicenow_messy.json"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("name,ip_address\n\"a\"b,10.0.0.1\n"))
	f.Add([]byte(`{"result":[{"name":{"display_value":"x"}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := Parse(data, Options{Now: now})
		if err != nil {
			return
		}
		if len(res.Records)+len(res.Bad) != res.Rows {
			t.Fatalf("%d records + %d bad != %d rows", len(res.Records), len(res.Bad), res.Rows)
		}
		for _, b := range res.Bad {
			if b.Line < 1 || b.Reason == "" {
				t.Fatalf("bad row without line or reason: %+v", b)
			}
		}
		for _, r := range res.Records {
			if n, err := inventory.WorkloadName(r.Name); err != nil || n != r.Name || r.Key == "" {
				t.Fatalf("record with a bad name or key: %+v", r)
			}
		}
	})
}
