package cli

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/manager"
)

// startManagerWithAgents is startManager with the agent channel on.
func startManagerWithAgents(t *testing.T) []string {
	t.Helper()
	flags, _ := startManagerWith(t, manager.Config{AgentListen: "127.0.0.1:0"})
	return flags
}

// syncBuffer is a buffer the agent's logger and the test may share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestTokenAgentGetHosts(t *testing.T) {
	conn := startManagerWithAgents(t)
	with := func(args ...string) []string { return append(args, conn...) }

	out := mustRun(t, "", with("token", "create", "--ttl", "30m", "--host", "hv-1")...)
	m := regexp.MustCompile(`(?m)^  (bulkhead agent .*)$`).FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "token:          bhb_") || !regexp.MustCompile(`ca-fingerprint: [0-9a-f]{64}`).MatchString(out) {
		t.Fatalf("token create output:\n%s", out)
	}
	if !strings.Contains(m[1], "--host-name hv-1") {
		t.Errorf("agent command line does not name the host: %s", m[1])
	}
	out = mustRun(t, "", with("token", "create", "-o", "json")...)
	if !strings.Contains(out, `"caFingerprint"`) || !strings.Contains(out, `"agentAddress": "127.0.0.1:`) {
		t.Errorf("token create -o json:\n%s", out)
	}

	// Run the printed command line, in a state dir of the test's, without
	// touching the kernel.
	args := strings.Fields(m[1])[1:]
	for i, a := range args {
		if a == "--state-dir" {
			args[i+1] = t.TempDir()
		}
	}
	args = append(args, "--dry-run", "--iface-pattern", "bhtestnomatch*")
	ctx, cancel := context.WithCancel(context.Background())
	var agentLog syncBuffer
	agentDone := make(chan error, 1)
	go func() {
		root := NewRoot(strings.NewReader(""), &agentLog, &agentLog)
		root.SetArgs(args)
		agentDone <- root.ExecuteContext(ctx)
	}()
	defer func() {
		cancel()
		if err := <-agentDone; err != nil {
			t.Errorf("agent: %v\n%s", err, agentLog.String())
		}
	}()

	deadline := time.Now().Add(10 * time.Second)
	for {
		out = mustRun(t, "", with("get", "hosts")...)
		if regexp.MustCompile(`(?m)^hv-1\s+yes\s+yes\s+0\s+0\s+0\s+0\s+now\s+-`).MatchString(out) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("get hosts never showed hv-1 connected and in sync:\n%s\nagent log:\n%s", out, agentLog.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(out, "NAME  CONNECTED  IN-SYNC  REALIZED  DESIRED  PUBLISHED") {
		t.Errorf("get hosts header:\n%s", out)
	}
	out = mustRun(t, "", with("get", "host", "hv-1", "-o", "json")...)
	if !strings.Contains(out, `"name": "hv-1"`) || !strings.Contains(out, `"connected": true`) {
		t.Errorf("get host hv-1 -o json:\n%s", out)
	}
	if _, err := run(t, "", with("get", "host", "nosuch")...); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("get host nosuch: %v", err)
	}
	if !strings.Contains(agentLog.String(), "dry run") {
		t.Errorf("the agent did not say it runs dry:\n%s", agentLog.String())
	}
}

// TestAgentNotEnrolledSaysHow: an agent with no certificate and no token
// says what to do instead of starting.
func TestAgentNotEnrolledSaysHow(t *testing.T) {
	_, err := run(t, "", "agent", "--state-dir", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "not enrolled") || !strings.Contains(err.Error(), "bulkhead token create") {
		t.Errorf("agent without enrollment: %v", err)
	}
}
