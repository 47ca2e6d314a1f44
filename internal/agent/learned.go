package agent

import "github.com/bulkhead/bulkhead/internal/flow"

// FlowAnnotator is an Enforcer that learns about connections while it
// enforces (the L7 queue reader: application, TLS version, server name).
type FlowAnnotator interface {
	AnnotateFlow(r *flow.Record)
}

// AnnotateFlow gives r what the enforcer learned of its connection, if the
// enforcer learns anything; the flow collector's Annotate hook.
func (a *Agent) AnnotateFlow(r *flow.Record) {
	if an, ok := a.enf.(FlowAnnotator); ok {
		an.AnnotateFlow(r)
	}
}
