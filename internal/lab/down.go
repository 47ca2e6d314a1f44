package lab

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bulkhead/bulkhead/internal/netlab"
)

// labFiles are the entries of the lab directory that Up makes; Down removes
// these and then the directory if nothing else is left in it, so that a
// --dir pointing at a directory with other files in it loses only the
// lab's.
var labFiles = []string{"apps", "agents", "manager", "manager.log", "lab-ca.crt", StateFile + ".tmp", StateFile}

// Down removes the lab in dir: it stops every process the lab recorded,
// then any process still inside one of the lab's namespaces or running
// from files in dir (a lab whose `up` crashed before recording them),
// deletes every namespace whose name starts with the prefix (and with them
// every interface, route and nftables table in them), the files it made in
// /etc/netns, and the lab's files in dir. prefix is used when dir holds no
// readable state. Down of a lab that does not exist does nothing.
func Down(dir, prefix string, progress io.Writer) error {
	if progress == nil {
		progress = io.Discard
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("lab: dir %s: %w", dir, err)
	}
	dir = filepath.Clean(abs)
	if err := CheckRoot("down"); err != nil {
		return err
	}
	st, err := LoadState(dir)
	switch {
	case err == nil:
		prefix = st.Prefix
	case errors.Is(err, ErrNoLab):
	default:
		fmt.Fprintf(progress, "warning: %v; removing by prefix %s\n", err, prefix)
	}
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if !prefixRE.MatchString(prefix) {
		return fmt.Errorf("lab: prefix %q: want a letter then up to 15 letters or digits", prefix)
	}

	var errs error
	stopped := 0
	if st != nil {
		procs := st.Procs()
		for _, p := range procs {
			if p.Alive() {
				stopped++
			}
		}
		stop(procs, 5*time.Second)
	}
	nss := namespaces(prefix)
	inodes := map[uint64]bool{}
	for _, n := range nss {
		if ino, err := nsInode(filepath.Join(netlab.RunDir, n)); err == nil {
			inodes[ino] = true
		}
	}
	if left := strays(dir, inodes); len(left) > 0 {
		for _, p := range left {
			fmt.Fprintf(progress, "stopping pid %d (%s)\n", p.PID, strings.Join(p.Args, " "))
		}
		stopped += len(left)
		stop(left, 3*time.Second)
	}
	if stopped > 0 {
		fmt.Fprintf(progress, "stopped %d processes\n", stopped)
	}

	deleted, err := netlab.CleanupPrefix(prefix + "-")
	if err != nil {
		errs = errors.Join(errs, err)
	}
	if len(deleted) > 0 {
		fmt.Fprintf(progress, "removed %d namespaces (%s-*) with their interfaces and nftables tables\n", len(deleted), prefix)
	}

	// /etc/netns/PREFIX-*: by prefix rather than from the state, so that
	// a crash before the state recorded them leaves nothing either.
	if ents, err := os.ReadDir(EtcNetns); err == nil {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), prefix+"-") {
				if err := os.RemoveAll(filepath.Join(EtcNetns, e.Name())); err != nil {
					errs = errors.Join(errs, fmt.Errorf("lab: %w", err))
				}
			}
		}
	}

	removed := false
	for _, f := range labFiles {
		p := filepath.Join(dir, f)
		if _, err := os.Lstat(p); err != nil {
			continue
		}
		removed = true
		if err := os.RemoveAll(p); err != nil {
			errs = errors.Join(errs, fmt.Errorf("lab: %w", err))
		}
	}
	if ents, err := os.ReadDir(dir); err == nil && len(ents) == 0 {
		if err := os.Remove(dir); err != nil {
			errs = errors.Join(errs, fmt.Errorf("lab: %w", err))
		}
	}
	if removed {
		fmt.Fprintf(progress, "removed the lab's files in %s\n", dir)
	}
	if errs != nil {
		return fmt.Errorf("lab down: %w (run it again to retry)", errs)
	}
	return nil
}
