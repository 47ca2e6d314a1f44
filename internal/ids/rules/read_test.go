package rules

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestRead(t *testing.T) {
	f, err := os.Open("testdata/sample.rules")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rules, probs := Read(f, "sample.rules", nil)
	type loaded struct {
		gid, sid uint32
		line     int
	}
	var got []loaded
	for _, r := range rules {
		got = append(got, loaded{r.GID, r.SID, r.Line})
		if r.File != "sample.rules" {
			t.Errorf("sid %d: file %q", r.SID, r.File)
		}
	}
	want := []loaded{{1, 1000001, 3}, {1, 1000003, 6}, {3, 1000001, 12}, {1, 1000006, 14}, {1, 1000007, 15}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("loaded %+v, want %+v", got, want)
	}
	wantProbs := []Problem{
		{File: "sample.rules", Line: 9, SID: 1000004, Keyword: "xbits"},
		{File: "sample.rules", Line: 10},
		{File: "sample.rules", Line: 11, SID: 1000001, Reason: "duplicate sid 1000001, first at line 3"},
		{File: "sample.rules", Line: 13, SID: 1000005, Keyword: "pcre"},
	}
	if len(probs) != len(wantProbs) {
		t.Fatalf("problems %+v, want %d", probs, len(wantProbs))
	}
	for i, w := range wantProbs {
		p := probs[i]
		if p.File != w.File || p.Line != w.Line || p.SID != w.SID || p.Keyword != w.Keyword || p.Reason == "" ||
			w.Reason != "" && p.Reason != w.Reason {
			t.Errorf("problem %d = %+v, want %+v", i, p, w)
		}
	}
	cont := rules[1]
	if cont.Msg != "continued over lines" || string(cont.Matches[0].Pattern) != "SSH-" || !cont.DstPorts.Contains(22) {
		t.Errorf("continued rule: %+v", cont)
	}
	if strings.HasSuffix(rules[4].Raw, "\r") || strings.HasSuffix(rules[3].Raw, "\t") {
		t.Errorf("raw keeps line ends: %q %q", rules[3].Raw, rules[4].Raw)
	}
}

func TestReadError(t *testing.T) {
	_, probs := Read(failingReader{}, "broken.rules", nil)
	if len(probs) != 1 || !strings.Contains(probs[0].Reason, "read: disk on fire") {
		t.Errorf("problems %+v", probs)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errDisk }

type diskError struct{}

func (diskError) Error() string { return "disk on fire" }

var errDisk = diskError{}

// TestReadParseAgree checks that a rule read from a file equals the one
// Parse makes of its Raw text.
func TestReadParseAgree(t *testing.T) {
	f, err := os.Open("testdata/sample.rules")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rules, _ := Read(f, "sample.rules", nil)
	for _, r := range rules {
		p, err := Parse(r.Raw, nil)
		if err != nil {
			t.Errorf("sid %d: %v", r.SID, err)
			continue
		}
		p.File, p.Line = r.File, r.Line
		if !reflect.DeepEqual(p, r) {
			t.Errorf("sid %d: Parse(Raw) = %+v, Read gave %+v", r.SID, p, r)
		}
	}
}
