// Command bulkhead is the single Bulkhead binary: manager, CLI and (later)
// agent and lab; the work lives in internal/cli.
package main

import (
	"os"

	"github.com/bulkhead/bulkhead/internal/cli"
)

func main() { os.Exit(cli.Execute()) }
