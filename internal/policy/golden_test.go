package policy

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/invalid/*.golden from the current output")

// load does what "bulkhead apply -f" does locally: decode, then validate the
// documents as a whole set.
func load(name string, data []byte) (*Set, error) {
	docs, err := Decode(name, data)
	if err != nil {
		return nil, err
	}
	return Apply(NewSet(), docs)
}

func TestValidFiles(t *testing.T) {
	files, _ := filepath.Glob("testdata/valid/*.yaml")
	if len(files) == 0 {
		t.Fatal("no testdata/valid/*.yaml")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			s, err := load(filepath.Base(f), data)
			if err != nil {
				t.Fatalf("want no error, got:\n%v", err)
			}
			// What is encoded decodes to the same set.
			out, err := EncodeSet(s)
			if err != nil {
				t.Fatal(err)
			}
			s2, err := load("encoded", out)
			if err != nil {
				t.Fatalf("encoded set does not load: %v\n%s", err, out)
			}
			if d := DiffSets(s, s2); len(d) != 0 {
				t.Errorf("round trip changed %d objects; first: %s %s\n%s", len(d), d[0].Kind, d[0].Name, d[0].Diff)
			}
		})
	}
}

func TestInvalidFilesGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/invalid/*.yaml")
	if len(files) < 15 {
		t.Fatalf("want at least 15 testdata/invalid/*.yaml, have %d", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			_, err = load(filepath.Base(f), data)
			if err == nil {
				t.Fatal("want an error, got none")
			}
			if _, ok := err.(ErrorList); !ok {
				t.Errorf("error is %T, want ErrorList", err)
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(f, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./internal/policy -update)", err)
			}
			if got != string(want) {
				t.Errorf("errors differ from %s:\n got:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}
