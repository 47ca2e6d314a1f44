package scenario

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: no input makes Parse panic or hang, and whatever it accepts
// can be launched.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yaml")
	more, _ := filepath.Glob("testdata/errors/*.yaml")
	for _, p := range append(files, more...) {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	if b, err := BuiltinSource("shop"); err == nil {
		f.Add(b)
	}
	f.Add([]byte("name: x\nnetwork: {ipv4: 10.1.0.0/16}\nhosts: [{name: h}]\nworkloads: [{name: w, host: h, ipv4: 10.1.0.1, apps: [{attacker: {}}]}]\ntraffic: [{from: w, attacker: {scan: {targets: [w], rate: .nan}}}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 1<<16 {
			return
		}
		s, err := Parse("fuzz.yaml", data)
		if err != nil {
			return
		}
		if _, err := s.Launches(LaunchOptions{}); err != nil {
			t.Fatalf("valid scenario does not launch: %v", err)
		}
	})
}
