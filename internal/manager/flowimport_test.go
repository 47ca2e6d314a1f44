package manager

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead/bulkhead/internal/api"
	"github.com/bulkhead/bulkhead/internal/apiclient"
	"github.com/bulkhead/bulkhead/internal/policy"
)

// The bytes an exporter sends: IPFIX (RFC 7011) and NetFlow v9 (RFC 3954)
// messages with a template set, then data sets under it.

func put16(b []byte, v uint16) []byte { return binary.BigEndian.AppendUint16(b, v) }
func put32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }
func put64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

// flowSet frames a set: id, length, body padded to 4 bytes.
func flowSet(id uint16, body []byte) []byte {
	for len(body)%4 != 0 {
		body = append(body, 0)
	}
	return append(put16(put16(nil, id), uint16(4+len(body))), body...)
}

// exportTemplate is template 256: IPv4 5-tuple, octets and packets (delta,
// 8 bytes) and start/end in milliseconds since the epoch (IEs 152/153).
func exportTemplate() []byte {
	ies := [][2]uint16{{8, 4}, {12, 4}, {4, 1}, {7, 2}, {11, 2}, {1, 8}, {2, 8}, {152, 8}, {153, 8}}
	b := put16(put16(nil, 256), uint16(len(ies)))
	for _, ie := range ies {
		b = put16(put16(b, ie[0]), ie[1])
	}
	return b
}

type exported struct {
	src, dst     string
	proto        uint8
	sport, dport uint16
	bytes, pkts  uint64
	start, end   time.Time
}

func (e exported) encode() []byte {
	b := netip.MustParseAddr(e.src).AsSlice()
	b = append(b, netip.MustParseAddr(e.dst).AsSlice()...)
	b = append(b, e.proto)
	b = put16(put16(b, e.sport), e.dport)
	b = put64(put64(b, e.bytes), e.pkts)
	return put64(put64(b, uint64(e.start.UnixMilli())), uint64(e.end.UnixMilli()))
}

func ipfixPacket(export time.Time, seq uint32, sets ...[]byte) []byte {
	body := []byte{}
	for _, s := range sets {
		body = append(body, s...)
	}
	b := put16(put16(nil, 10), uint16(16+len(body)))
	b = put32(put32(put32(b, uint32(export.Unix())), seq), 1)
	return append(b, body...)
}

func netflowV9Packet(export time.Time, seq uint32, count uint16, sets ...[]byte) []byte {
	b := put16(put16(nil, 9), count)
	b = put32(put32(put32(put32(b, 3_600_000), uint32(export.Unix())), seq), 2)
	for _, s := range sets {
		b = append(b, s...)
	}
	return b
}

// freeUDPAddr is a loopback UDP address nothing listens on.
func freeUDPAddr(t *testing.T) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}

const stagedPolicy = `apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: app}
spec: {ips: [10.1.0.1], host: h1, tags: {tier: app}}
---
apiVersion: bulkhead.io/v1
kind: Workload
metadata: {name: db}
spec: {ips: [10.1.0.2], host: h2, tags: {tier: db}}
---
apiVersion: bulkhead.io/v1
kind: Policy
metadata: {name: p}
spec:
  category: Application
  rules:
  - {name: would-block-sql, sources: [10.1.0.1], destinations: [10.1.0.2], services: [tcp/5432], action: drop, mode: staged}
  - {name: allow-all, action: allow}
`

// applyStaged applies stagedPolicy and returns the staged rule's id.
func applyStaged(t *testing.T, tm *testManager) uint32 {
	t.Helper()
	ctx := context.Background()
	docs, err := policy.Decode("p.yaml", []byte(stagedPolicy))
	if err != nil {
		t.Fatal(err)
	}
	op := tm.client(t, api.RoleOperator)
	if _, err := op.Apply(ctx, api.ApplyRequest{Documents: wire(t, docs)}); err != nil {
		t.Fatal(err)
	}
	rev, err := op.Revision(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	return rev.Set.RuleIDs["p/would-block-sql"]
}

// TestIPFIXCollectorToAPI: a manager with --ipfix-listen receives real
// IPFIX and NetFlow v9 datagrams; their records are found through GET
// /flows under the exporter's host, named from the inventory, with the
// staged rule that would decide them, as observed flows (rule 0, allow).
func TestIPFIXCollectorToAPI(t *testing.T) {
	tm := startManagerWith(t, Config{IPFIXListen: freeUDPAddr(t)})
	staged := applyStaged(t, tm)
	conn, err := net.Dial("udp", tm.srv.cfg.IPFIXListen)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	exporter := conn.LocalAddr().(*net.UDPAddr).AddrPort().Addr().String()

	now := time.Now().UTC().Truncate(time.Millisecond)
	sql := exported{"10.1.0.1", "10.1.0.2", 6, 40000, 5432, 123456, 321, now.Add(-time.Minute), now.Add(-10 * time.Second)}
	web := exported{"10.1.0.1", "192.0.2.80", 6, 40001, 443, 900, 7, now.Add(-30 * time.Second), now.Add(-5 * time.Second)}
	dns := exported{"10.1.0.2", "192.0.2.53", 17, 5353, 53, 80, 1, now.Add(-2 * time.Second), now.Add(-time.Second)}
	for _, pkt := range [][]byte{
		// Data before its template is dropped (and counted) ...
		ipfixPacket(now, 1, flowSet(256, dns.encode())),
		// ... then template and data in one message, data alone in the next.
		ipfixPacket(now, 2, flowSet(2, exportTemplate()), flowSet(256, sql.encode())),
		ipfixPacket(now, 3, flowSet(256, web.encode())),
		// NetFlow v9 from the same socket keeps templates of its own.
		netflowV9Packet(now, 1, 2, flowSet(0, exportTemplate()), flowSet(256, dns.encode())),
	} {
		if _, err := conn.Write(pkt); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond) // keep the order; UDP on loopback does not reorder, but readers may
	}

	c := tm.client(t, api.RoleAuditor)
	host := "ipfix/" + exporter
	var got []api.Flow
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("after 10s, %d flows of host %s: %+v", len(got), host, got)
		}
		time.Sleep(50 * time.Millisecond)
		if got, err = c.Flows(context.Background(), apiclient.FlowQuery{Host: host}); err != nil {
			t.Fatal(err)
		}
	}
	if len(got) != 3 {
		t.Fatalf("%d flows, want 3: %+v", len(got), got)
	}
	byPort := map[uint16]api.Flow{}
	for _, f := range got {
		byPort[f.DstPort] = f
		if f.Host != host || !strings.HasPrefix(f.ID, host+"/") || f.Kind != "end" || f.RuleID != 0 || f.Verdict != "allow" {
			t.Errorf("flow %+v: want host %s, kind end, rule 0, verdict allow", f, host)
		}
	}
	s := byPort[5432]
	if s.Src != "10.1.0.1" || s.Dst != "10.1.0.2" || s.Proto != "tcp" || s.SrcPort != 40000 || s.SrcBytes != 123456 || s.SrcPackets != 321 ||
		!s.Start.Equal(sql.start) || s.End == nil || !s.End.Equal(sql.end) {
		t.Errorf("sql flow %+v, exported %+v", s, sql)
	}
	if s.SrcWorkload != "app" || s.DstWorkload != "db" || s.StagedRuleID != staged || staged == 0 {
		t.Errorf("sql flow: workloads %q -> %q, staged rule %d; want app -> db, %d", s.SrcWorkload, s.DstWorkload, s.StagedRuleID, staged)
	}
	if w := byPort[443]; w.SrcWorkload != "app" || w.DstWorkload != "" || w.StagedRuleID != 0 || w.SrcBytes != 900 {
		t.Errorf("web flow %+v", w)
	}
	if d := byPort[53]; d.Proto != "udp" || d.SrcWorkload != "db" || !d.Start.Equal(dns.start) {
		t.Errorf("NetFlow v9 dns flow %+v, exported %+v", d, dns)
	}

	metrics, err := tm.client(t, api.RoleAuditor).Raw(context.Background(), "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"bulkhead_ipfix_datagrams_total 4", "bulkhead_ipfix_records_total 3", "bulkhead_ipfix_no_template_sets_total 1",
		"bulkhead_ipfix_stored_records_total 3", "bulkhead_ipfix_malformed_datagrams_total 0"} {
		if !strings.Contains(string(metrics), want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestIPFIXListenError(t *testing.T) {
	busy, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	tm := startManager(t)
	tm.srv.cfg.IPFIXListen = busy.LocalAddr().String()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := tm.srv
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Serve(ctx, ln); err == nil || !strings.Contains(err.Error(), "ipfix collector: listen "+busy.LocalAddr().String()) {
		t.Errorf("Serve with a busy IPFIX address: %v", err)
	}
}

const connLog = "#separator \\x09\n" +
	"#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration\torig_bytes\tresp_bytes\tconn_state\torig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes\n" +
	"%d.250000\tCa1\t10.1.0.1\t40000\t10.1.0.2\t5432\ttcp\t-\t1.5\t100\t200\tSF\t3\t256\t2\t304\n" +
	"%d.000001\tCa2\t10.1.0.2\t5353\t192.0.2.53\t53\tudp\tdns\t0.001\t38\t54\tSF\t1\t66\t1\t82\n" +
	"%d.5\tCa3\t10.1.0.1\t40001\tnot-an-ip\t80\ttcp\t-\t-\t-\t-\tS0\t1\t60\t0\t0\n" +
	"%d.5\tCa4\t10.1.0.1\t40002\n" +
	"%d.5\tCa5\t10.1.0.1\t40003\t10.1.0.2\t80\tgre\t-\t-\t-\t-\tS0\t1\t60\t0\t0\n"

// TestZeekImport: a conn.log streamed to POST /flows/import is stored
// under zeek/SENSOR, bad lines are reported by number, and importing the
// same file again changes nothing.
func TestZeekImport(t *testing.T) {
	tm := startManager(t)
	staged := applyStaged(t, tm)
	ctx := context.Background()
	op := tm.client(t, api.RoleOperator)
	ts := time.Now().Add(-time.Minute).Unix()
	log := fmt.Sprintf(connLog, ts, ts, ts, ts, ts)
	for range 2 {
		res, err := op.ImportFlows(ctx, api.FlowFormatZeek, "sensor1", strings.NewReader(log))
		if err != nil {
			t.Fatal(err)
		}
		if res.Host != "zeek/sensor1" || res.Records != 2 || res.Skipped != 3 || len(res.Errors) != 3 {
			t.Fatalf("result %+v: want 2 records, 3 skipped", res)
		}
		for i, want := range []struct {
			line   int
			reason string
		}{{5, "id.resp_h"}, {6, "4 columns, #fields has 16"}, {7, `proto "gre"`}} {
			if e := res.Errors[i]; e.Line != want.line || !strings.Contains(e.Reason, want.reason) {
				t.Errorf("error %d: %+v, want line %d with %q", i, e, want.line, want.reason)
			}
		}
	}
	got, err := op.Flows(ctx, apiclient.FlowQuery{Host: "zeek/sensor1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d flows after two imports, want 2: %+v", len(got), got)
	}
	for _, f := range got {
		switch f.ID {
		case "zeek/sensor1/Ca1":
			if f.SrcWorkload != "app" || f.DstWorkload != "db" || f.StagedRuleID != staged || f.SrcBytes != 256 || f.DstPackets != 2 ||
				f.RuleID != 0 || f.Verdict != "allow" || f.End == nil || f.End.Sub(f.Start) != 1500*time.Millisecond {
				t.Errorf("Ca1: %+v", f)
			}
		case "zeek/sensor1/Ca2":
			if f.Proto != "udp" || f.SrcWorkload != "db" || f.DstPort != 53 {
				t.Errorf("Ca2: %+v", f)
			}
		default:
			t.Errorf("unexpected flow %+v", f)
		}
	}

	// No host: the default sensor.
	if res, err := op.ImportFlows(ctx, api.FlowFormatZeek, "", strings.NewReader(log)); err != nil || res.Host != "zeek/default" {
		t.Errorf("default sensor: %+v, %v", res, err)
	}
	var ae *apiclient.Error
	for _, tt := range []struct{ format, host, body string }{
		{"netflow", "s", log},
		{"", "s", log},
		{api.FlowFormatZeek, "Bad/Name", log},
		{api.FlowFormatZeek, "s", "#fields\tts\n" + strings.Repeat("x", 2<<20) + "\n"}, // a line beyond 1 MiB
	} {
		_, err := op.ImportFlows(ctx, tt.format, tt.host, strings.NewReader(tt.body))
		if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
			t.Errorf("format %q host %q: %v, want 400", tt.format, tt.host, err)
		}
	}
	if _, err := tm.client(t, api.RoleAuditor).ImportFlows(ctx, api.FlowFormatZeek, "s", strings.NewReader(log)); !errors.As(err, &ae) || ae.Status != http.StatusForbidden {
		t.Errorf("auditor import: %v, want 403", err)
	}
}
