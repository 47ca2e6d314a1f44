package zeek

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/flow"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func parseAll(t testing.TB, in string) ([]flow.Record, Result) {
	t.Helper()
	var recs []flow.Record
	res, err := Parse(strings.NewReader(in), "zeek:s1", func(r flow.Record) error {
		recs = append(recs, r)
		return nil
	})
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return recs, res
}

func render(recs []flow.Record, res Result) []byte {
	var b bytes.Buffer
	for _, r := range recs {
		fmt.Fprintf(&b, "%s %s %s %s -> %s proto %d icmp %d/%d bytes %d/%d pkts %d/%d %s..%s %s rule %d\n",
			r.ID, r.Kind, r.Host, netip.AddrPortFrom(r.Src, r.SrcPort), netip.AddrPortFrom(r.Dst, r.DstPort), r.Proto, r.ICMPType, r.ICMPCode,
			r.SrcBytes, r.DstBytes, r.SrcPackets, r.DstPackets,
			r.Start.Format(time.RFC3339Nano), r.End.Format(time.RFC3339Nano), r.Verdict, r.RuleID)
	}
	fmt.Fprintf(&b, "records %d bad %d\n", res.Records, res.Bad)
	for _, e := range res.Errors {
		fmt.Fprintln(&b, e)
	}
	return b.Bytes()
}

// The TSV and JSON logs in testdata are a realistic capture with messy
// lines mixed in; the golden files list every record and every bad line.
func TestGolden(t *testing.T) {
	for _, name := range []string{"conn.log", "conn.json"} {
		t.Run(name, func(t *testing.T) {
			in, err := os.ReadFile(filepath.Join("testdata", name))
			if err != nil {
				t.Fatal(err)
			}
			got := render(parseAll(t, string(in)))
			golden := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("got\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// The same connections logged as TSV and as JSON give the same records.
func TestTSVAndJSONAgree(t *testing.T) {
	tsv, _ := os.ReadFile("testdata/conn.log")
	js, _ := os.ReadFile("testdata/conn.json")
	a, _ := parseAll(t, string(tsv))
	b, _ := parseAll(t, string(js))
	byID := map[string]flow.Record{}
	for _, r := range a {
		byID[r.ID] = r
	}
	n := 0
	for _, r := range b {
		if o, ok := byID[r.ID]; ok {
			n++
			if o != r {
				t.Errorf("%s:\n tsv  %+v\n json %+v", r.ID, o, r)
			}
		}
	}
	if n != 3 {
		t.Errorf("%d connections in both logs, want 3", n)
	}
}

func TestLines(t *testing.T) {
	const hdr = "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tduration\torig_bytes\tresp_bytes\n"
	tests := []struct {
		name    string
		in      string
		records int
		errs    []string // substrings, in line order
	}{
		{"data before #fields", "1.0\tC1\t10.0.0.1\t1\t10.0.0.2\t2\ttcp\t-\t-\t-\n", 0, []string{"line 1: data before a #fields header"}},
		{"unset fields", hdr + "1.0\tC1\t10.0.0.1\t1\t10.0.0.2\t2\ttcp\t-\t-\t-\n", 1, nil},
		{"unset required", hdr + "-\tC1\t10.0.0.1\t1\t10.0.0.2\t2\ttcp\t-\t-\t-\n", 0, []string{"line 2: ts, id.orig_h"}},
		{"bad count", hdr + "1.0\tC1\t10.0.0.1\t1\t10.0.0.2\t2\ttcp\t-\t-5\t-\n", 0, []string{"line 2: orig_bytes"}},
		{"bad ts", hdr + "yesterday\tC1\t10.0.0.1\t1\t10.0.0.2\t2\ttcp\t-\t-\t-\n", 0, []string{"line 2: ts"}},
		{"mixed families", hdr + "1.0\tC1\t10.0.0.1\t1\t::1\t2\ttcp\t-\t-\t-\n", 0, []string{"different families"}},
		{"CRLF and blank lines", hdr + "\r\n\n1.0\tC1\t10.0.0.1\t1\t10.0.0.2\t2\ttcp\t0.5\t1\t2\r\n", 1, nil},
		{"comma separator", "#separator \\x2c\n#fields,ts,id.orig_h,id.resp_h,proto\n5,10.0.0.1,10.0.0.2,udp\n", 1, nil},
		{"bad separator", "#separator \\xZZ\n", 0, []string{"line 1: #separator"}},
		{"json not an object", `{"ts": [1]}` + "\n" + `{]` + "\n", 0, []string{"line 1:", "line 2: json"}},
		{"json wrong types", `{"ts":1,"id.orig_h":1,"id.resp_h":"10.0.0.2","proto":"tcp"}`, 0, []string{"id.orig_h: want a string"}},
		{"json negative", `{"ts":-1,"id.orig_h":"10.0.0.1","id.resp_h":"10.0.0.2","proto":"tcp"}`, 0, []string{"ts:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, res := parseAll(t, tt.in)
			if len(recs) != tt.records || res.Records != tt.records {
				t.Errorf("%d records (Result %d), want %d; errors %v", len(recs), res.Records, tt.records, res.Errors)
			}
			if len(res.Errors) != len(tt.errs) || res.Bad != len(tt.errs) {
				t.Fatalf("errors %v (Bad %d), want %d", res.Errors, res.Bad, len(tt.errs))
			}
			for i, want := range tt.errs {
				if !strings.Contains(res.Errors[i].Error(), want) {
					t.Errorf("error %q, want it to contain %q", res.Errors[i], want)
				}
			}
		})
	}
}

func TestParseStops(t *testing.T) {
	in, _ := os.ReadFile("testdata/conn.log")
	stop := errors.New("store full")
	res, err := Parse(bytes.NewReader(in), "z", func(flow.Record) error { return stop })
	if !errors.Is(err, stop) || !strings.HasPrefix(err.Error(), "zeek: line 9:") || res.Records != 0 {
		t.Errorf("emit error: %v, %+v", err, res)
	}
	long := "#fields\tts\n" + strings.Repeat("1", maxLine+1)
	if _, err := Parse(strings.NewReader(long), "z", func(flow.Record) error { return nil }); err == nil {
		t.Error("a line over 1 MiB: no error")
	}
}

func TestErrorsAreBounded(t *testing.T) {
	_, res := parseAll(t, strings.Repeat("junk\n", MaxLineErrors+50))
	if res.Bad != MaxLineErrors+50 || len(res.Errors) != MaxLineErrors {
		t.Errorf("Bad %d, %d errors kept", res.Bad, len(res.Errors))
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"testdata/conn.log", "testdata/conn.json"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("#separator \\x2c\n#fields,ts,proto\n1,tcp\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		lines := bytes.Count(in, []byte("\n")) + 1
		res, err := Parse(bytes.NewReader(in), "z", func(r flow.Record) error {
			if !r.Src.IsValid() || !r.Dst.IsValid() || r.ID == "" || r.End.Before(r.Start) {
				t.Fatalf("bad record %+v", r)
			}
			return nil
		})
		if err == nil && res.Records+res.Bad > lines {
			t.Fatalf("%d records + %d bad from %d lines", res.Records, res.Bad, lines)
		}
	})
}

func BenchmarkParseTSV(b *testing.B) {
	in, _ := os.ReadFile("testdata/conn.log")
	head, _, _ := bytes.Cut(in, []byte("1795428000"))
	line := []byte("1795428000.123456\tCHhAvVGS1DHFjwGM9\t10.0.1.5\t49152\t10.0.2.7\t443\ttcp\tssl\t1.234567\t1024\t4096\tSF\tT\tT\t0\tShADadFf\t10\t1544\t8\t4512\t-\n")
	const n = 1000
	log := append(head, bytes.Repeat(line, n)...)
	b.SetBytes(int64(len(log)))
	for b.Loop() {
		res, err := Parse(bytes.NewReader(log), "z", func(flow.Record) error { return nil })
		if err != nil || res.Records != n {
			b.Fatal(res, err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "records/s")
}
