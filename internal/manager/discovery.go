package manager

// discoveryRoutes: recommendations and application discovery (issue 5).
func (s *Server) discoveryRoutes() []route { return nil }
