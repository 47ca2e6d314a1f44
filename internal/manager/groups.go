package manager

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/bulkhead/bulkhead/internal/api"
)

// groupRoutes: group membership as the evaluator resolves it.
func (s *Server) groupRoutes() []route {
	return []route{
		{method: "GET", path: api.Prefix + "/groups/{name}/members", role: api.RoleAuditor,
			summary: "A group's live members: workloads with their addresses in it, IPs/CIDRs, users, FQDNs (?revision=N)",
			reply:   api.GroupMembers{}, handle: s.handleGroupMembers},
	}
}

func (s *Server) handleGroupMembers(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	var n int64
	if v := r.URL.Query().Get(api.GroupMembersRevision); v != "" {
		var err error
		if n, err = strconv.ParseInt(v, 10, 64); err != nil || n < 0 {
			return httpError(http.StatusBadRequest, fmt.Errorf("group %s members: revision %q: not a revision number", name, v))
		}
	}
	// The evaluator is what decides flows: membership read from it cannot
	// differ from what the data plane and compliance use.
	ev, rev, err := s.evals.get(r.Context(), n)
	if err != nil {
		return err
	}
	m, ok := ev.Members(name)
	if !ok {
		return httpError(http.StatusNotFound, fmt.Errorf("group %q not found in revision %d", name, rev))
	}
	out := api.GroupMembers{Group: name, Revision: rev, Workloads: []api.GroupMemberWorkload{}, Addresses: []string{},
		Users: m.Users, FQDNs: m.FQDNs}
	for _, wm := range m.Workloads {
		gw := api.GroupMemberWorkload{Name: wm.Name}
		for _, a := range wm.Addrs {
			gw.IPs = append(gw.IPs, a.String())
		}
		out.Workloads = append(out.Workloads, gw)
	}
	for _, p := range m.Prefixes {
		out.Addresses = append(out.Addresses, p.String())
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
