// Package discover proposes app, tier and env tags for workloads the
// inventory knows nothing about, from the flows they take part in: it
// clusters the flow graph into application communities (Louvain modularity)
// and reads each workload's tier from the ports it serves and the role it
// plays, and says which peers and ports led it there. It only proposes;
// writing tags is the caller's decision.
package discover

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"

	"gonum.org/v1/gonum/graph/community"
	"gonum.org/v1/gonum/graph/simple"

	"github.com/bulkhead/bulkhead/internal/flow"
	"github.com/bulkhead/bulkhead/internal/policy"
)

// Tag keys a proposal fills.
const (
	TagApp  = "app"
	TagTier = "tier"
	TagEnv  = "env"
)

// Weight says what an edge of the flow graph counts.
type Weight uint8

const (
	// WeightFlows counts connections (one per flow ID).
	WeightFlows Weight = iota
	// WeightBytes counts bytes in both directions.
	WeightBytes
)

// Options tunes Propose. The zero value is usable.
type Options struct {
	Weight Weight
	// Resolution is the Louvain resolution; above 1 gives smaller
	// communities. Zero means 1.
	Resolution float64
	// Seed makes the community search repeatable. Zero means 1.
	Seed uint64
	// IncludeTagged proposes for workloads that already have an app and a
	// tier too, so that a caller can check the CMDB against the traffic.
	IncludeTagged bool
	// MaxPeers bounds the peers listed as evidence. Zero means 8.
	MaxPeers int
}

// Proposal is what discovery suggests for one workload, with its reasons.
type Proposal struct {
	Workload string
	// Tags holds app and tier, and env when the community agrees on one.
	// A tag that could not be inferred is absent.
	Tags map[string]string
	// Confidence is in [0, 1]: how sure the app is times how sure the tier
	// is.
	Confidence float64
	Community  Community
	Evidence   Evidence
}

// Community is the application community the workload fell into.
type Community struct {
	ID int // index in Propose's community order, stable for one input
	// App is the majority app of the tagged servers in the community, or
	// empty when none is tagged.
	App     string
	Members []string
}

// Evidence is what led to a proposal.
type Evidence struct {
	// Serves lists the ports the workload answered on, busiest first.
	Serves []Port
	// Peers are the workloads it talked to, heaviest first.
	Peers []Peer
	// AppFrom and TierFrom say in words where the app and tier came from.
	AppFrom  string
	TierFrom string
}

// Port is a served port with the traffic seen on it.
type Port struct {
	Proto   uint8
	Port    uint16
	Flows   uint64
	Clients int
}

func (p Port) String() string { return fmt.Sprintf("%s/%d", protoName(p.Proto), p.Port) }

// Peer is one workload the proposal's workload talked to.
type Peer struct {
	Workload string
	App      string // the peer's tags, if any
	Tier     string
	// Outbound is true when the proposal's workload opened the connections.
	Outbound bool
	Ports    []string // "tcp/5432", the destination ports used
	Flows    uint64
	Bytes    uint64
}

// ssh is served by nearly everything for administration, so it says nothing
// about a tier unless it is all a workload serves.
const portSSH = 22

// tierOfPort is the fallback when no tagged workload serves the same ports.
var tierOfPort = map[uint16]string{
	80: "web", 443: "web", 8080: "api", 8443: "web",
	5432: "db", 3306: "db", 1433: "db", 27017: "db",
	6379: "cache", 11211: "cache",
	53:  "dns",
	389: "ldap", 636: "ldap",
	22: "ssh",
}

// dataTiers are the tiers a batch job reads from; a pure client of only
// these is a batch job, not a user.
var dataTiers = map[string]bool{"db": true, "cache": true}

type portKey struct {
	proto uint8
	port  uint16
}

type edgeKey struct {
	src, dst int32
	pk       portKey
}

type edgeVal struct{ flows, bytes uint64 }

type pair struct{ a, b int32 }

type node struct {
	w         *policy.Workload
	app, tier string
	env       string
	serves    map[portKey]*Port
	clientsOf map[portKey]map[int32]bool
	callees   []callee
	comm      int
	traffic   float64 // sum of the weights of its edges
}

type callee struct {
	dst int32
	pk  portKey
}

// Propose returns a proposal for every workload without both an app and a
// tier tag (every workload with opts.IncludeTagged), in input order.
// Workloads seen in no allowed flow are proposed nothing.
func Propose(workloads []*policy.Workload, flows []flow.Record, opts Options) []Proposal {
	if opts.Resolution == 0 {
		opts.Resolution = 1
	}
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	if opts.MaxPeers == 0 {
		opts.MaxPeers = 8
	}
	nodes := make([]node, len(workloads))
	byName := make(map[string]int32, len(workloads))
	byIP := make(map[netip.Addr]int32, len(workloads))
	for i, w := range workloads {
		t := w.Spec.Tags
		nodes[i] = node{w: w, app: t[TagApp], tier: t[TagTier], env: t[TagEnv],
			serves: map[portKey]*Port{}, clientsOf: map[portKey]map[int32]bool{}}
		byName[w.Metadata.Name] = int32(i)
		for _, s := range w.Spec.IPs {
			if a, err := netip.ParseAddr(s); err == nil {
				byIP[a.Unmap()] = int32(i)
			} else if p, err := netip.ParsePrefix(s); err == nil && p.IsSingleIP() {
				byIP[p.Addr().Unmap()] = int32(i)
			}
		}
	}
	resolve := func(name string, a netip.Addr) (int32, bool) {
		if name != "" {
			if i, ok := byName[name]; ok {
				return i, true
			}
		}
		i, ok := byIP[a.Unmap()]
		return i, ok
	}

	// Updates and the end of one connection share an ID and carry totals,
	// so a connection counts once, with its largest byte total.
	edges := map[edgeKey]*edgeVal{}
	seen := map[string]uint64{}
	for i := range flows {
		r := &flows[i]
		// Drops, and connections nobody answered (a scan's), show no
		// service.
		if r.Unanswered() {
			continue
		}
		s, ok1 := resolve(r.SrcWorkload, r.Src)
		d, ok2 := resolve(r.DstWorkload, r.Dst)
		if !ok1 || !ok2 || s == d {
			continue
		}
		b := r.SrcBytes + r.DstBytes
		k := edgeKey{s, d, portKey{r.Proto, r.DstPort}}
		e := edges[k]
		if e == nil {
			e = &edgeVal{}
			edges[k] = e
		}
		if r.ID == "" {
			e.flows++
			e.bytes += b
			continue
		}
		prev, dup := seen[r.ID]
		if !dup {
			e.flows++
		}
		if b > prev {
			e.bytes += b - prev
			seen[r.ID] = b
		} else if !dup {
			seen[r.ID] = prev
		}
	}

	// Pair weights and served ports.
	pairs := map[pair]*edgeVal{}
	peerPorts := map[[2]int32][]string{}
	for k, e := range edges {
		n := &nodes[k.dst]
		p := n.serves[k.pk]
		if p == nil {
			p = &Port{Proto: k.pk.proto, Port: k.pk.port}
			n.serves[k.pk] = p
			n.clientsOf[k.pk] = map[int32]bool{}
		}
		p.Flows += e.flows
		n.clientsOf[k.pk][k.src] = true
		nodes[k.src].callees = append(nodes[k.src].callees, callee{k.dst, k.pk})
		a, b := k.src, k.dst
		if a > b {
			a, b = b, a
		}
		pv := pairs[pair{a, b}]
		if pv == nil {
			pv = &edgeVal{}
			pairs[pair{a, b}] = pv
		}
		pv.flows += e.flows
		pv.bytes += e.bytes
		pk := [2]int32{k.src, k.dst}
		peerPorts[pk] = append(peerPorts[pk], portKey{k.pk.proto, k.pk.port}.String())
	}
	for i := range nodes {
		for pk, p := range nodes[i].serves {
			p.Clients = len(nodes[i].clientsOf[pk])
		}
	}

	// The graph: every workload seen in a flow is a node; weights are
	// log-scaled so one chatty pair does not outweigh the structure.
	g := simple.NewWeightedUndirectedGraph(0, 0)
	inGraph := make([]bool, len(nodes))
	adj := make([][]int32, len(nodes))
	pairList := make([]pair, 0, len(pairs))
	for p := range pairs {
		pairList = append(pairList, p)
	}
	slices.SortFunc(pairList, func(x, y pair) int {
		return cmp.Or(cmp.Compare(x.a, y.a), cmp.Compare(x.b, y.b))
	})
	pairWeight := func(p pair) float64 {
		v := pairs[p]
		x := v.flows
		if opts.Weight == WeightBytes {
			x = v.bytes
		}
		return 1 + math.Log1p(float64(x))
	}
	for _, p := range pairList {
		for _, i := range []int32{p.a, p.b} {
			if !inGraph[i] {
				inGraph[i] = true
				g.AddNode(simple.Node(i))
			}
		}
		g.SetWeightedEdge(g.NewWeightedEdge(simple.Node(p.a), simple.Node(p.b), pairWeight(p)))
		nodes[p.a].traffic += pairWeight(p)
		nodes[p.b].traffic += pairWeight(p)
		adj[p.a] = append(adj[p.a], p.b)
		adj[p.b] = append(adj[p.b], p.a)
	}
	for i := range nodes {
		nodes[i].comm = -1
	}
	var comms [][]int32
	if len(pairList) > 0 {
		red := community.Modularize(g, opts.Resolution, rand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15))
		for _, c := range red.Communities() {
			ids := make([]int32, len(c))
			for j, n := range c {
				ids[j] = int32(n.ID())
			}
			slices.Sort(ids)
			comms = append(comms, ids)
		}
		slices.SortFunc(comms, func(x, y []int32) int { return cmp.Compare(x[0], y[0]) })
		for ci, c := range comms {
			for _, i := range c {
				nodes[i].comm = ci
			}
		}
	}
	commApp := make([]vote, len(comms))
	commEnv := make([]vote, len(comms))
	for ci, c := range comms {
		commApp[ci] = majorityApp(nodes, c)
		commEnv[ci] = majority(nodes, c, func(n *node) string { return n.env })
	}

	f := newFeatures(nodes)
	var out []Proposal
	for i := range nodes {
		n := &nodes[i]
		if n.comm < 0 {
			continue
		}
		if !opts.IncludeTagged && n.app != "" && n.tier != "" {
			continue
		}
		out = append(out, propose(nodes, int32(i), comms, commApp, commEnv, adj, pairs, peerPorts, f, opts))
	}
	return out
}

func (p portKey) String() string { return fmt.Sprintf("%s/%d", protoName(p.proto), p.port) }

func protoName(p uint8) string {
	switch p {
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 132:
		return "sctp"
	case 1:
		return "icmp"
	case 58:
		return "icmpv6"
	}
	return fmt.Sprintf("proto%d", p)
}

type vote struct {
	value string
	share float64 // of the votes cast
	votes int
}

func majority(nodes []node, members []int32, get func(*node) string) vote {
	counts := map[string]int{}
	traffic := map[string]float64{}
	total := 0
	for _, i := range members {
		if v := get(&nodes[i]); v != "" {
			counts[v]++
			traffic[v] += nodes[i].traffic
			total++
		}
	}
	// Ties go to the app with more traffic: shared services (DNS, the
	// directory) join whichever community talks to them most, and must not
	// outvote the application itself.
	var best vote
	for v, c := range counts {
		if c > best.votes || c == best.votes && (traffic[v] > traffic[best.value] ||
			traffic[v] == traffic[best.value] && v < best.value) {
			best = vote{value: v, votes: c}
		}
	}
	if total > 0 {
		best.share = float64(best.votes) / float64(total)
	}
	return best
}

// majorityApp votes among the tagged servers of a community: clients of an
// application are often tagged with an app of their own (the customers, a
// partner) and must not rename the application they use.
func majorityApp(nodes []node, members []int32) vote {
	v := majority(nodes, members, taggedServerApp)
	if v.votes == 0 {
		v = majority(nodes, members, func(n *node) string { return n.app })
		v.share /= 2
	}
	return v
}

func taggedServerApp(n *node) string {
	if len(n.serves) == 0 {
		return ""
	}
	return n.app
}
