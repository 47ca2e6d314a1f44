package discover

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Confidence of each way a tier is found.
const (
	confSameProfile = 0.9 // a tagged workload serves exactly the same ports
	confPortTable   = 0.75
	confRole        = 0.8 // serves nothing: a client or a batch job
	confNearest     = 0.5
	minSimilar      = 0.5
)

func propose(nodes []node, i int32, comms [][]int32, commApp, commEnv []vote,
	adj [][]int32, pairs map[pair]*edgeVal, peerPorts map[[2]int32][]string, f *features, opts Options) Proposal {
	n := &nodes[i]
	ci := n.comm
	p := Proposal{
		Workload: n.w.Metadata.Name,
		Tags:     map[string]string{},
		Community: Community{ID: ci, App: commApp[ci].value,
			Members: names(nodes, comms[ci])},
	}

	// Peers, and how much of the workload's traffic stays in its community.
	var inside, total float64
	for _, j := range adj[i] {
		a, b := min(i, j), max(i, j)
		v := pairs[pair{a, b}]
		w := float64(v.flows)
		total += w
		if nodes[j].comm == ci {
			inside += w
		}
		_, out := peerPorts[[2]int32{i, j}]
		ports := append(slices.Clone(peerPorts[[2]int32{i, j}]), peerPorts[[2]int32{j, i}]...)
		slices.Sort(ports)
		p.Evidence.Peers = append(p.Evidence.Peers, Peer{
			Workload: nodes[j].w.Metadata.Name, App: nodes[j].app, Tier: nodes[j].tier,
			Outbound: out, Ports: slices.Compact(ports), Flows: v.flows, Bytes: v.bytes,
		})
	}
	slices.SortFunc(p.Evidence.Peers, func(x, y Peer) int {
		return cmp.Or(cmp.Compare(y.Flows, x.Flows), strings.Compare(x.Workload, y.Workload))
	})
	if len(p.Evidence.Peers) > opts.MaxPeers {
		p.Evidence.Peers = p.Evidence.Peers[:opts.MaxPeers]
	}
	strength := 1.0
	if total > 0 {
		strength = inside / total
	}
	p.Evidence.Serves = servedPorts(n, false)

	// The app: the community's, unless the workload is a pure client that
	// looks like a tagged client of some other app.
	app, share, why := appVote(nodes, i, comms[ci], commApp[ci], adj, pairs, total)
	appConf := share * strength
	p.Evidence.AppFrom = fmt.Sprintf("community %d: %s; %.0f%% of its traffic stays in the community", ci, why, 100*strength)
	env := ""
	if commEnv[ci].share > 0.5 {
		env = commEnv[ci].value
	}

	var tier string
	var tierConf float64
	served := servedPorts(n, true)
	if len(served) == 0 {
		tier, tierConf, p.Evidence.TierFrom = clientRole(nodes, i, adj, peerPorts)
		if j, s := nearest(nodes, i, f.client, func(m *node) bool { return len(m.serves) == 0 }); s >= minSimilar {
			m := &nodes[j]
			if tier == "client" {
				app, appConf = m.app, s
				p.Evidence.AppFrom = fmt.Sprintf("calls the same services as %s (app %q, similarity %.2f)", m.w.Metadata.Name, m.app, s)
				if m.env != "" {
					env = m.env
				}
			}
		} else if tier == "client" {
			// A client nobody tagged anything like: the community's app is
			// the app it uses, not necessarily its own.
			appConf = min(appConf, 0.3)
			p.Evidence.AppFrom += "; a client like no tagged one, so it may belong to an app of its own"
		}
	} else {
		tier, tierConf, p.Evidence.TierFrom = serverTier(nodes, i, served, f)
	}

	if app != "" {
		p.Tags[TagApp] = app
	}
	if tier != "" {
		p.Tags[TagTier] = tier
	}
	if env != "" {
		p.Tags[TagEnv] = env
	}
	p.Confidence = appConf * tierConf
	return p
}

// appVote gives each tagged server of the community one vote for its app,
// and the servers the workload talks to most up to two more, so that a
// shared service in the community does not outvote the application the
// workload actually uses. Its own tags do not vote.
func appVote(nodes []node, i int32, members []int32, comm vote, adj [][]int32, pairs map[pair]*edgeVal, total float64) (string, float64, string) {
	votes := map[string]float64{}
	var sum float64
	for _, m := range members {
		if a := taggedServerApp(&nodes[m]); m != i && a != "" {
			votes[a]++
			sum++
		}
	}
	if sum == 0 {
		if comm.value == "" {
			return "", 0, "no member is tagged"
		}
		return comm.value, comm.share, fmt.Sprintf("no tagged server; %d tagged members are app %q", comm.votes, comm.value)
	}
	if total > 0 {
		for _, j := range adj[i] {
			if a := taggedServerApp(&nodes[j]); a != "" && nodes[j].comm == nodes[i].comm {
				v := 2 * float64(pairs[pair{min(i, j), max(i, j)}].flows) / total
				votes[a] += v
				sum += v
			}
		}
	}
	best, bestV := "", -1.0
	for a, v := range votes {
		if v > bestV || v == bestV && (a == comm.value || best != comm.value && a < best) {
			best, bestV = a, v
		}
	}
	return best, bestV / sum, fmt.Sprintf("its tagged servers and the workload's own peers vote %.1f of %.1f for app %q", bestV, sum, best)
}

func names(nodes []node, ids []int32) []string {
	out := make([]string, len(ids))
	for k, i := range ids {
		out[k] = nodes[i].w.Metadata.Name
	}
	slices.Sort(out)
	return out
}

// servedPorts lists a workload's listeners, busiest first. With tierOnly,
// ssh is left out when the workload serves anything else.
func servedPorts(n *node, tierOnly bool) []Port {
	out := make([]Port, 0, len(n.serves))
	for _, p := range n.serves {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(x, y Port) int {
		return cmp.Or(cmp.Compare(y.Flows, x.Flows), cmp.Compare(x.Proto, y.Proto), cmp.Compare(x.Port, y.Port))
	})
	if tierOnly && len(out) > 1 {
		out = slices.DeleteFunc(out, func(p Port) bool { return p.Port == portSSH })
	}
	return out
}

// tierOf is a workload's tier as far as its peers can tell: its tag, or
// what the port they reach it on suggests.
func tierOf(m *node, port string) string {
	if m.tier != "" {
		return m.tier
	}
	var pk portKey
	var proto string
	if _, err := fmt.Sscanf(strings.Replace(port, "/", " ", 1), "%s %d", &proto, &pk.port); err == nil {
		return tierOfPort[pk.port]
	}
	return ""
}

// clientRole names a workload that serves nothing: a batch job when it
// reads only from data tiers, a client otherwise.
func clientRole(nodes []node, i int32, adj [][]int32, peerPorts map[[2]int32][]string) (string, float64, string) {
	var dst []string
	batch := true
	for _, j := range adj[i] {
		for _, port := range peerPorts[[2]int32{i, j}] {
			t := tierOf(&nodes[j], port)
			dst = append(dst, fmt.Sprintf("%s %s (%s)", nodes[j].w.Metadata.Name, port, cmp.Or(t, "?")))
			if !dataTiers[t] {
				batch = false
			}
		}
	}
	slices.Sort(dst)
	if batch && len(dst) > 0 {
		return "batch", confRole, "serves nothing and only reads data tiers: " + strings.Join(dst, ", ")
	}
	return "client", confRole, "serves nothing; calls " + strings.Join(dst, ", ")
}

// serverTier takes the tier of a tagged workload that serves the same
// ports, else the port table's, else the nearest tagged server's.
func serverTier(nodes []node, i int32, served []Port, f *features) (string, float64, string) {
	isServer := func(m *node) bool { return len(m.serves) > 0 }
	j, s := nearest(nodes, i, f.server, isServer)
	if j >= 0 && s >= minSimilar && samePorts(servedPorts(&nodes[i], true), servedPorts(&nodes[j], true)) {
		return nodes[j].tier, confSameProfile * s, fmt.Sprintf("serves %s like %s (tier %q, similarity %.2f)",
			portList(served), nodes[j].w.Metadata.Name, nodes[j].tier, s)
	}
	for _, p := range served {
		if t, ok := tierOfPort[p.Port]; ok {
			return t, confPortTable, fmt.Sprintf("serves %s (%d clients)", p, p.Clients)
		}
	}
	if j >= 0 && s > 0 {
		return nodes[j].tier, confNearest * s, fmt.Sprintf("serves %s; nearest tagged server %s (tier %q, similarity %.2f)",
			portList(served), nodes[j].w.Metadata.Name, nodes[j].tier, s)
	}
	return "", 0, "serves " + portList(served) + ", which no table or tagged workload explains"
}

func samePorts(a, b []Port) bool {
	if len(a) != len(b) {
		return false
	}
	key := func(p Port) string { return p.String() }
	x, y := make([]string, len(a)), make([]string, len(b))
	for k := range a {
		x[k], y[k] = key(a[k]), key(b[k])
	}
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

func portList(ps []Port) string {
	s := make([]string, len(ps))
	for k, p := range ps {
		s[k] = p.String()
	}
	return strings.Join(s, " ")
}

// features are the profiles nearest compares, computed once per input.
type features struct{ server, client []map[string]bool }

func newFeatures(nodes []node) *features {
	f := &features{server: make([]map[string]bool, len(nodes)), client: make([]map[string]bool, len(nodes))}
	for i := range nodes {
		f.server[i] = serverFeatures(nodes, int32(i))
		f.client[i] = clientFeatures(nodes, int32(i))
	}
	return f
}

// serverFeatures: the ports served and the tiers of the clients.
func serverFeatures(nodes []node, i int32) map[string]bool {
	n := &nodes[i]
	f := map[string]bool{}
	for pk, clients := range n.clientsOf {
		if pk.port == portSSH && len(n.serves) > 1 {
			continue
		}
		f["serve "+pk.String()] = true
		for c := range clients {
			if t := nodes[c].tier; t != "" {
				f["from "+t] = true
			}
		}
	}
	return f
}

// clientFeatures: what the workload calls, by the callee's app and tier
// where tagged, else its name, and the port.
func clientFeatures(nodes []node, i int32) map[string]bool {
	f := map[string]bool{}
	for _, c := range nodes[i].callees {
		m := &nodes[c.dst]
		who := m.w.Metadata.Name
		if m.app != "" && m.tier != "" {
			who = m.app + "/" + m.tier
		}
		f[who+" "+c.pk.String()] = true
	}
	return f
}

// nearest finds the tagged workload (with a tier) among those eligible
// whose features are most like i's, by Jaccard similarity; ties go to
// the earlier workload.
func nearest(nodes []node, i int32, features []map[string]bool, eligible func(*node) bool) (int32, float64) {
	fi := features[i]
	best, bestS := int32(-1), 0.0
	for j := range nodes {
		m := &nodes[j]
		if int32(j) == i || m.tier == "" || m.app == "" || m.comm < 0 || !eligible(m) {
			continue
		}
		if s := jaccard(fi, features[j]); s > bestS {
			best, bestS = int32(j), s
		}
	}
	return best, bestS
}

func jaccard(a, b map[string]bool) float64 {
	if len(a) == 0 && len(b) == 0 {
		return 0
	}
	both := 0
	for k := range a {
		if b[k] {
			both++
		}
	}
	return float64(both) / float64(len(a)+len(b)-both)
}
