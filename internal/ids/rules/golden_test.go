package rules

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestGolden reads a rule per keyword family and compares the whole AST
// with the golden file.
func TestGolden(t *testing.T) {
	f, err := os.Open("testdata/keywords.rules")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rules, probs := Read(f, "keywords.rules", nil)
	if len(probs) != 0 {
		t.Fatalf("problems: %+v", probs)
	}
	got, err := json.MarshalIndent(rules, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	const golden = "testdata/keywords.golden.json"
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("rules differ from %s (run with -update after checking the change):\n%s", golden, got)
	}
}
