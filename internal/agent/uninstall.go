package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Uninstall removes everything the agent made on the host: the enforcer's
// kernel state, then the key, certificates and saved state in stateDir (and
// stateDir itself when nothing else is left in it). The host stays enrolled
// in the manager until an operator revokes it.
func Uninstall(ctx context.Context, stateDir string, enf Enforcer) error {
	if err := enf.Remove(ctx); err != nil {
		return fmt.Errorf("agent: uninstall: remove enforcement: %w", err)
	}
	var errs []error
	for _, f := range []string{DesiredFile, CertFile, KeyFile, CAFile} {
		if err := os.Remove(filepath.Join(stateDir, f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("agent: uninstall: %w", err)
	}
	if entries, err := os.ReadDir(stateDir); err == nil && len(entries) == 0 {
		os.Remove(stateDir)
	}
	return nil
}
