package enforce

import (
	"time"

	"github.com/bulkhead/bulkhead/internal/flow"
	"github.com/bulkhead/bulkhead/internal/l7"
)

// AnnotateFlow gives a flow record what the L7 queue reader learned of its
// connection (application, TLS version, server name). Connections the
// reader never saw (no L7 rule concerned them, or no state with L7 rules
// is realized) keep none. The agent's flow collector calls it for every
// record it emits (agent.Agent.AnnotateFlow).
func (e *NFT) AnnotateFlow(r *flow.Record) {
	e.mu.Lock()
	rd := e.reader
	e.mu.Unlock()
	if rd != nil {
		annotate(rd.Learned(), r)
	}
}

// startSlack allows for the record's start (the kernel's timestamp, or the
// collector's first sight) and the reader's decision being read from
// different clocks.
const startSlack = 2 * time.Second

// annotate copies what t knows of r's connection into r. A connection
// that started after the reader decided the tuple is a later one that
// reused it without being inspected, and gets nothing.
func annotate(t *l7.Table, r *flow.Record) {
	if r.Kind == flow.KindDrop || r.App != "" {
		return
	}
	l, ok := t.Lookup(l7.Tuple{Src: r.Src, Dst: r.Dst, Proto: r.Proto, SPort: r.SrcPort, DPort: r.DstPort})
	if !ok || (!r.Start.IsZero() && r.Start.After(l.At.Add(startSlack))) {
		return
	}
	r.App, r.TLSVersion, r.ServerName = l.App, l.TLSVersion, l.ServerName
}
