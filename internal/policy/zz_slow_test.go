package policy

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestZZSlow(t *testing.T) {
	files, _ := filepath.Glob("/root/.cache/go-build/fuzz/github.com/bulkhead/bulkhead/internal/policy/FuzzDecode/*")
	for _, f := range files {
		raw, _ := os.ReadFile(f)
		line := strings.Split(string(raw), "\n")[1]
		line = strings.TrimSuffix(strings.TrimPrefix(line, "[]byte("), ")")
		s, err := strconv.Unquote(line)
		if err != nil {
			continue
		}
		start := time.Now()
		Decode("x", []byte(s))
		if d := time.Since(start); d > 50*time.Millisecond {
			t.Logf("%v %d bytes %q", d, len(s), s[:min(len(s), 300)])
		}
	}
}
