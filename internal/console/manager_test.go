package console_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bulkhead/bulkhead/internal/apiclient"
	"github.com/bulkhead/bulkhead/internal/manager"
)

// consoleManager is a real manager serving the console in-process, for
// one browser test.
type consoleManager struct {
	srv        *manager.Server
	url        string
	adminToken []byte // as in the data dir, with its newline
	admin      *apiclient.Client
}

// startConsoleManager starts a manager on a loopback port until ctx ends
// or the test does, and waits until it answers its admin.
func startConsoleManager(t *testing.T, ctx context.Context) *consoleManager {
	t.Helper()
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := manager.New(manager.Config{DataDir: dir, Listen: ln.Addr().String(), AgentListen: "127.0.0.1:0"}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(sctx, ln) }()
	t.Cleanup(func() {
		stop()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
		srv.Close()
	})
	token, err := os.ReadFile(filepath.Join(dir, manager.AdminTokenFile))
	if err != nil {
		t.Fatal(err)
	}
	url := "https://" + ln.Addr().String()
	admin, err := apiclient.New(url, strings.TrimSpace(string(token)), srv.CA().CertPEM())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the manager to answer", func() bool { _, err := admin.WhoAmI(ctx); return err == nil })
	return &consoleManager{srv: srv, url: url, adminToken: token, admin: admin}
}
