package cli

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/api"
)

// zeekLog is a conn.log as Zeek's ASCII writer leaves it, with three lines
// that are not connections (5, 6 and 8).
func zeekLog(ts int64) string {
	return "#separator \\x09\n" +
		"#path\tconn\n" +
		"#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tduration\torig_ip_bytes\tresp_ip_bytes\torig_pkts\tresp_pkts\n" +
		fmt.Sprintf("%d.1\tC1\t10.10.1.10\t40000\t10.10.2.10\t8443\ttcp\t2.0\t1200\t5400\t10\t8\n", ts) +
		fmt.Sprintf("%d.2\tC2\t10.10.1.10\tx\t10.10.2.10\t8443\ttcp\t2.0\t1200\t5400\t10\t8\n", ts) +
		fmt.Sprintf("%d.3\tC3\t10.10.1.10\n", ts) +
		fmt.Sprintf("%d.4\tC4\t10.10.2.10\t40001\t10.10.3.10\t5432\ttcp\t0.5\t300\t400\t3\t2\n", ts) +
		fmt.Sprintf("%d.5\tC5\t10.10.2.10\t40001\t10.10.3.10\t5432\tsctp\t0.5\t300\t400\t3\t2\n", ts)
}

func TestImportZeek(t *testing.T) {
	conn := startManager(t)
	with := func(args ...string) []string { return append(args, conn...) }
	mustRun(t, "", with("apply", "-f", "../../examples/shop.yaml")...)
	dir := t.TempDir()
	log := zeekLog(time.Now().Add(-time.Minute).Unix())
	plain := filepath.Join(dir, "conn.log")
	os.WriteFile(plain, []byte(log), 0o600)

	out := mustRun(t, "", with("import", "zeek", plain, "--host", "sensor1")...)
	for _, want := range []string{
		"2 records imported as host zeek/sensor1, 3 lines skipped",
		plain + ":5: id.orig_p:",
		plain + ":6: 3 columns, #fields has 12",
		plain + `:8: proto "sctp"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	// The same file gzip'd, from stdin, as JSON: nothing new is stored.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(log))
	zw.Close()
	js := mustRun(t, gz.String(), with("import", "zeek", "-", "--host", "sensor1", "-o", "json")...)
	var res api.FlowImportResult
	if err := json.Unmarshal([]byte(js), &res); err != nil || res.Records != 2 || res.Skipped != 3 || len(res.Errors) != 3 || res.Errors[2].Line != 8 {
		t.Fatalf("import -o json: %+v, %v\n%s", res, err, js)
	}

	js = mustRun(t, "", with("flows", "--host", "zeek/sensor1", "-o", "json")...)
	var flows []api.Flow
	if err := json.Unmarshal([]byte(js), &flows); err != nil {
		t.Fatal(err)
	}
	if len(flows) != 2 {
		t.Fatalf("%d flows after importing twice, want 2:\n%s", len(flows), js)
	}
	names := map[string]string{}
	for _, f := range flows {
		names[f.ID] = f.SrcWorkload + " -> " + f.DstWorkload
	}
	if names["zeek/sensor1/C1"] != "web-1 -> api-1" || names["zeek/sensor1/C4"] != "api-1 -> db-1" {
		t.Errorf("flows named from the inventory: %v", names)
	}

	// A file that is not a conn.log fails, saying so.
	junk := filepath.Join(dir, "junk.txt")
	os.WriteFile(junk, []byte("hello\nworld\n"), 0o600)
	if out, err := run(t, "", with("import", "zeek", junk)...); err == nil || !strings.Contains(err.Error(), "no connection read, 2 lines skipped") {
		t.Errorf("junk file: %v\n%s", err, out)
	}
	if _, err := run(t, "", with("import", "zeek", filepath.Join(dir, "missing.log"))...); err == nil || !strings.Contains(err.Error(), "missing.log") {
		t.Errorf("missing file: %v", err)
	}
}
