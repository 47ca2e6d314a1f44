package agent

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports keeps the agent free of the manager's parts: it runs on every
// host and must not carry the store, the REST API or the console.
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	forbidden := []string{
		"github.com/bulkhead/bulkhead/internal/manager",
		"github.com/bulkhead/bulkhead/internal/controlplane",
		"github.com/bulkhead/bulkhead/internal/store",
		"github.com/bulkhead/bulkhead/internal/apiclient",
		"github.com/bulkhead/bulkhead/internal/cli",
		"database/sql",
		"modernc.org/sqlite",
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if dep == f || strings.HasPrefix(dep, f+"/") {
				t.Errorf("the agent depends on %s", dep)
			}
		}
	}
}
