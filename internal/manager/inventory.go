package manager

import "context"

// inventoryRoutes: CMDB import, vCenter sources, per-source facts (issue 5).
func (s *Server) inventoryRoutes() []route { return nil }

// startInventorySources starts the periodic sync of configured sources
// (vCenter); they stop with ctx.
func (s *Server) startInventorySources(ctx context.Context) {}
