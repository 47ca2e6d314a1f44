// Package netlab builds small data centers out of Linux network namespaces —
// hosts joined by an underlay, workloads routed Calico-style behind each host —
// for the data-plane integration tests and, later, for `bulkhead lab`.
package netlab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// RunDir is where named network namespaces are bind-mounted, the same place
// `ip netns` uses, so `ip netns exec NAME ...` works on ours.
const RunDir = "/var/run/netns"

// Namespace is a named network namespace held open by a file descriptor.
//
// Go switches namespaces per OS thread, not per process, so nothing here
// calls setns on a thread that other goroutines could run on: netlink and
// nftables handles are bound to the namespace through Fd, and code that must
// run inside (sockets, /proc/sys) goes through Do, which runs on a locked
// thread.
type Namespace struct {
	Name string
	fd   netns.NsHandle
}

// NewNamespace creates the network namespace name and brings its loopback up.
// It fails if a namespace of that name exists.
func NewNamespace(name string) (*Namespace, error) {
	if err := os.MkdirAll(RunDir, 0o755); err != nil {
		return nil, fmt.Errorf("netlab: namespace %s: %w", name, err)
	}
	var fd netns.NsHandle
	err := onNewThread(func() error {
		var err error
		// NewNamed unshares the calling thread into the new namespace;
		// onNewThread moves it back (or retires the thread).
		fd, err = netns.NewNamed(name)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("netlab: create namespace %s: %w", name, err)
	}
	ns := &Namespace{Name: name, fd: fd}
	if err := ns.withHandle(func(h *netlink.Handle) error {
		lo, err := h.LinkByName("lo")
		if err != nil {
			return err
		}
		return h.LinkSetUp(lo)
	}); err != nil {
		ns.Delete()
		return nil, fmt.Errorf("netlab: namespace %s: loopback up: %w", name, err)
	}
	return ns, nil
}

// OpenNamespace opens an existing named namespace.
func OpenNamespace(name string) (*Namespace, error) {
	fd, err := netns.GetFromName(name)
	if err != nil {
		return nil, fmt.Errorf("netlab: open namespace %s: %w", name, err)
	}
	return &Namespace{Name: name, fd: fd}, nil
}

// Fd is a file descriptor referring to the namespace, valid until Close or
// Delete. Pass it to netlink.NewHandleAt, nftables.WithNetNSFd, the NetNS
// field of conntrack/nflog configs.
func (ns *Namespace) Fd() int { return int(ns.fd) }

// Handle returns a netlink handle bound to the namespace; the caller closes it.
func (ns *Namespace) Handle() (*netlink.Handle, error) {
	h, err := netlink.NewHandleAt(ns.fd)
	if err != nil {
		return nil, fmt.Errorf("netlab: netlink handle in %s: %w", ns.Name, err)
	}
	return h, nil
}

func (ns *Namespace) withHandle(fn func(h *netlink.Handle) error) error {
	h, err := ns.Handle()
	if err != nil {
		return err
	}
	defer h.Close()
	return fn(h)
}

// Close releases the descriptor; the namespace lives on while it is mounted.
func (ns *Namespace) Close() error {
	if ns.fd < 0 {
		return nil
	}
	err := ns.fd.Close()
	ns.fd = -1
	return err
}

// Delete closes the descriptor and unmounts the namespace. The kernel frees it
// (and every interface in it; veth peers elsewhere go too) once no socket or
// process refers to it any more.
func (ns *Namespace) Delete() error {
	ns.Close()
	if err := deleteNamed(ns.Name); err != nil {
		return fmt.Errorf("netlab: delete namespace %s: %w", ns.Name, err)
	}
	return nil
}

func deleteNamed(name string) error {
	err := netns.DeleteNamed(name)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.EINVAL) {
		// Not mounted (half-created): the file may still be there.
		if rmErr := os.Remove(filepath.Join(RunDir, name)); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) {
			return rmErr
		}
		return nil
	}
	return err
}

// Do runs fn on an OS thread that has entered the namespace, and waits.
//
// The thread is locked for the whole call, so everything fn does directly —
// opening sockets, writing /proc/sys/net, exec'ing with SysProcAttr — happens
// in the namespace. A socket keeps the namespace it was created in, so a
// net.Conn or net.Listener made inside fn can be used from any goroutine
// afterwards. Goroutines started by fn do NOT inherit the namespace. If the
// thread cannot be switched back, it is retired instead of being returned to
// the scheduler.
func (ns *Namespace) Do(fn func() error) error {
	var fnErr error
	err := onNewThread(func() error {
		if err := netns.Set(ns.fd); err != nil {
			return fmt.Errorf("netlab: enter namespace %s: %w", ns.Name, err)
		}
		fnErr = fn()
		return nil
	})
	if err != nil {
		return err
	}
	return fnErr
}

// onNewThread runs fn on a fresh goroutine locked to its OS thread, then puts
// the thread back into the namespace it started in. Only if that succeeds is
// the thread unlocked; otherwise the goroutine exits locked and the Go runtime
// terminates the thread, so no other goroutine ever runs in a namespace it
// did not ask for.
func onNewThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("netlab: current namespace: %w", err)
			return // exits locked: thread retired
		}
		defer orig.Close()
		fnErr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(fnErr, fmt.Errorf("netlab: restore namespace: %w", err))
			return // exits locked: thread retired
		}
		runtime.UnlockOSThread()
		errc <- fnErr
	}()
	return <-errc
}

// Sysctl writes value to the sysctl key (dotted, like "net.ipv4.ip_forward")
// as seen from inside the namespace: /proc/sys/net belongs to the network
// namespace of the thread that opens it.
func (ns *Namespace) Sysctl(key, value string) error {
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	err := ns.Do(func() error { return os.WriteFile(path, []byte(value), 0o644) })
	if err != nil {
		return fmt.Errorf("netlab: %s: sysctl %s=%s: %w", ns.Name, key, value, err)
	}
	return nil
}

// ReadSysctl reads a sysctl inside the namespace.
func (ns *Namespace) ReadSysctl(key string) (string, error) {
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	var out []byte
	err := ns.Do(func() error {
		var err error
		out, err = os.ReadFile(path)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("netlab: %s: sysctl %s: %w", ns.Name, key, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// Exec runs a command in the namespace with `ip netns exec` and returns its
// combined output; the error includes that output.
func (ns *Namespace) Exec(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("netlab: %s: %s %s: %w: %s", ns.Name, name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// ExecInput is Exec with stdin.
func (ns *Namespace) ExecInput(ctx context.Context, stdin string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("netlab: %s: %s %s: %w: %s", ns.Name, name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// CleanupPrefix deletes every named namespace whose name starts with prefix
// (and with it every interface they hold): the way to recover after a test
// or a lab crashed without Close. It returns the names it deleted.
func CleanupPrefix(prefix string) ([]string, error) {
	if prefix == "" {
		return nil, errors.New("netlab: cleanup: empty prefix")
	}
	entries, err := os.ReadDir(RunDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("netlab: cleanup %s: %w", prefix, err)
	}
	var deleted []string
	var errs error
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		if err := deleteNamed(e.Name()); err != nil {
			errs = errors.Join(errs, fmt.Errorf("netlab: cleanup %s: %w", e.Name(), err))
			continue
		}
		deleted = append(deleted, e.Name())
	}
	return deleted, errs
}
