package controlplane

import (
	"context"
	"crypto/tls"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bulkhead/bulkhead/internal/agentapi"
)

func TestSendAlerts(t *testing.T) {
	type call struct {
		host string
		eve  [][]byte
	}
	got := make(chan call, 10)
	var fail atomic.Bool
	tc := startCP(t, func(c *Config) {
		c.Alerts = func(ctx context.Context, host string, eve [][]byte) (int, error) {
			if fail.Load() {
				return 0, errors.New("disk full")
			}
			got <- call{host, eve}
			return len(eve) - 1, nil // the sink found one unreadable
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	batch := &agentapi.AlertBatch{Eve: [][]byte{
		[]byte(`{"event_type":"alert","bulkhead":{"host":"spoofed"}}`),
		[]byte(`not json`),
	}, Dropped: 3}

	// The same check as every RPC but Enroll: no certificate, no alerts.
	wantStatus(t, "alerts without a client certificate", func() error {
		_, err := tc.client(t).SendAlerts(ctx, batch)
		return err
	}(), codes.Unauthenticated, "needs a client certificate")
	ghostPEM, ghostKey, err := tc.ca.IssueClient("ghost", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ghost, err := tls.X509KeyPair(ghostPEM, ghostKey)
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, "alerts from a host never enrolled", func() error {
		_, err := tc.client(t, ghost).SendAlerts(ctx, batch)
		return err
	}(), codes.PermissionDenied, `host "ghost" is not enrolled`)
	if len(got) != 0 {
		t.Fatal("the sink was called for a refused batch")
	}

	c := tc.client(t, tc.enroll(t, "h1"))
	fail.Store(true)
	if _, err := c.SendAlerts(ctx, batch); status.Code(err) != codes.Unavailable {
		t.Errorf("SendAlerts with a failing store: %v, want Unavailable", err)
	}
	if n, dropped := tc.cp.AlertCounts(); n != 0 || dropped != 0 {
		t.Errorf("alert counts after a failure: %d, %d", n, dropped)
	}
	fail.Store(false)
	resp, err := c.SendAlerts(ctx, batch)
	if err != nil || resp.Accepted != 1 {
		t.Fatalf("SendAlerts: %v, %v", resp, err)
	}
	cl := <-got
	// The sink is told the certificate's host, whatever the records say.
	if cl.host != "h1" || len(cl.eve) != 2 || string(cl.eve[0]) != string(batch.Eve[0]) {
		t.Errorf("sink got %s %q", cl.host, cl.eve)
	}
	if n, dropped := tc.cp.AlertCounts(); n != 1 || dropped != 3 {
		t.Errorf("alert counts %d, %d; want 1 stored, 3 dropped", n, dropped)
	}
}
