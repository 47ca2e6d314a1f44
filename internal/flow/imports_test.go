package flow

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports keeps the agent side lean: the flow package runs on every
// host and must not pull in the manager, its stores, SQL or an HTTP stack.
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Skipf("go list: %v\n%s", err, out)
	}
	forbidden := []string{"net/http", "database/sql", "internal/manager", "internal/store", "internal/flowstore", "modernc.org/sqlite"}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if dep == f || strings.HasSuffix(dep, "/"+f) || strings.HasPrefix(dep, f+"/") {
				t.Errorf("internal/flow depends on %s", dep)
			}
		}
	}
}
