package manager

// analysisRoutes: the map, compliance and what-if (issue 5).
func (s *Server) analysisRoutes() []route { return nil }
