package archtest

import (
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// repoRoot finds the module root from this package's directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatalf("no go.mod at %s: %v", dir, err)
	}
	return dir
}

// TestPackageDocs fails when a package has no doc comment: every package
// says in one or two sentences what it is for.
func TestPackageDocs(t *testing.T) {
	root := repoRoot(t)
	checked := 0
	for _, top := range []string{"cmd", "internal"} {
		err := filepath.WalkDir(filepath.Join(root, top), func(path string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return err
			}
			if d.Name() == "testdata" || d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			pkgs, err := parser.ParseDir(token.NewFileSet(), path, func(fi os.FileInfo) bool {
				return !strings.HasSuffix(fi.Name(), "_test.go")
			}, parser.ParseComments|parser.PackageClauseOnly)
			if err != nil {
				return err
			}
			for name, pkg := range pkgs {
				checked++
				documented := false
				for _, f := range pkg.Files {
					if f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != "" {
						documented = true
					}
				}
				if !documented {
					rel, _ := filepath.Rel(root, path)
					t.Errorf("package %s (%s) has no doc comment saying what it is for", name, rel)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if checked < 5 {
		t.Fatalf("checked only %d packages: the walk is broken", checked)
	}
}

// forbidden lists, per package, imports it must never have (directly or
// through dependencies): the pure policy packages stay free of I/O layers.
var forbidden = map[string][]string{
	"internal/policy":  {"net/http", "database/sql", "internal/store", "internal/manager"},
	"internal/eval":    {"net/http", "database/sql", "internal/store", "internal/manager"},
	"internal/tagexpr": {"net/http", "database/sql"},
	"internal/ports":   {"net/http", "database/sql"},
	// The agent runs on every host: no manager, no stores, no SQL, no console.
	"internal/agent": {"internal/manager", "internal/store", "internal/flowstore", "internal/controlplane", "database/sql", "modernc.org/sqlite", "internal/console"},
	"internal/nft":   {"internal/manager", "internal/store", "database/sql"},
	"internal/flow":  {"internal/manager", "internal/store", "internal/flowstore", "database/sql"},
	// The console is static files; it reaches the manager only through the
	// public REST API, from the browser.
	"internal/console": {"internal/manager", "internal/store", "internal/flowstore", "internal/api", "database/sql"},
}

func TestImportBoundaries(t *testing.T) {
	root := repoRoot(t)
	for pkg, bad := range forbidden {
		if _, err := os.Stat(filepath.Join(root, pkg)); err != nil {
			continue
		}
		cmd := exec.Command("go", "list", "-deps", "./"+pkg)
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		deps := strings.Fields(string(out))
		for _, d := range deps {
			for _, b := range bad {
				if d == b || strings.HasSuffix(d, "/"+b) || strings.HasPrefix(d, b+"/") {
					t.Errorf("%s depends on %s, which it must not", pkg, d)
				}
			}
		}
	}
}
