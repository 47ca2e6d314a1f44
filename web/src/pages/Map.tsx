import { useEffect, useMemo, useRef, useState } from "react";
import cytoscape, { type Core, type ElementDefinition } from "cytoscape";
import { get } from "../api";
import { ComplianceBar, ErrorBox, Link, Page, Tags, WindowPicker, useLoad, when } from "../common";
import {
  bytes, decide, flowsSince, groupMembers, loadPolicy, num, ruleName, sinceParam, type PolicyView, type Since,
} from "../analysis";
import {
  appId, build, layout, maxWorkloadsPerTier, scopeOf, tierId, type DisplayEdge, type DisplayNode, type Expansion, type Graph, type Layer,
} from "../graph";
import type { EvalResponse, Flow, MapNode, MapResponse, Workload } from "../types";

// The palette of the compliance classes, also used by the legend.
export const classColours = { green: "#16794a", amber: "#d98e04", red: "#b42318", dashed: "#7a3fc0", none: "#98a2b3" };

const mapURL = (level: string, since: Since, scope?: string) =>
  `/map?level=${level}&since=${encodeURIComponent(sinceParam(since))}${scope ? `&scope=${encodeURIComponent(scope)}` : ""}`;

type Selection = { kind: "node" | "edge"; id: string } | null;

// MapHandle is what the browser tests read: the drawn elements and their
// colours as Cytoscape holds them, not pixels.
export interface MapHandle {
  ready: boolean;
  revision: number;
  nodes: () => { id: string; kind: string; label: string; parent?: string }[];
  edges: () => { id: string; from: string; to: string; cls: string; colour: string; style: string; counts: unknown; drops: number }[];
  expand: (id: string) => void;
  select: (id: string) => void;
}

declare global {
  interface Window {
    __bulkheadMap?: MapHandle;
  }
}

export function MapPage() {
  const [since, setSince] = useState<Since>("24h");
  const [expanded, setExpanded] = useState<Expansion>({ apps: new Set(), tiers: new Set() });
  const [layers, setLayers] = useState<Layer[]>([]);
  const [error, setError] = useState<unknown>(null);
  const [selected, setSelected] = useState<Selection>(null);
  const [tick, setTick] = useState(0);
  const [loading, setLoading] = useState(true);
  const policy = useLoad(loadPolicy, [tick]);

  // Every layer is fetched again when the window changes or on refresh;
  // expanding fetches only the new one.
  const wanted = useMemo(() => {
    const w: { key: string; level: string; scope?: string }[] = [{ key: "base", level: "app" }];
    for (const a of expanded.apps) w.push({ key: `app:${a}`, level: "tier", scope: scopeFromId(a, "app") });
    for (const t of expanded.tiers) w.push({ key: `tier:${t}`, level: "workload", scope: scopeFromId(t, "tier") });
    return w;
  }, [expanded]);

  const fetched = useRef(new Map<string, { since: Since; tick: number; data: MapResponse }>());
  useEffect(() => {
    let live = true;
    const todo = wanted.filter((w) => {
      const have = fetched.current.get(w.key);
      return !have || have.since !== since || have.tick !== tick;
    });
    setLoading(todo.length > 0);
    Promise.all(
      todo.map(async (w) => {
        const data = await get<MapResponse>(mapURL(w.level, since, w.scope));
        fetched.current.set(w.key, { since, tick, data });
      }),
    ).then(
      () => {
        if (!live) return;
        setError(null);
        setLayers(wanted.flatMap((w) => {
          const f = fetched.current.get(w.key);
          return f ? [{ key: w.key, data: f.data }] : [];
        }));
        setLoading(false);
      },
      (e) => {
        if (!live) return;
        setError(e);
        setLoading(false);
      },
    );
    return () => {
      live = false;
    };
  }, [wanted, since, tick]);

  const graph = useMemo(() => build(layers, expanded), [layers, expanded]);

  const toggle = (id: string) => {
    setExpanded((x) => {
      const next = { apps: new Set(x.apps), tiers: new Set(x.tiers) };
      if (id.startsWith("a:")) {
        const a = id.slice(2);
        if (next.apps.has(a)) {
          next.apps.delete(a);
          for (const t of [...next.tiers]) if (t.startsWith(a + "/")) next.tiers.delete(t);
        } else next.apps.add(a);
      } else if (id.startsWith("t:")) {
        const t = id.slice(2);
        if (next.tiers.has(t)) next.tiers.delete(t);
        else next.tiers.add(t);
      }
      return next;
    });
  };

  const base = layers.find((l) => l.key === "base")?.data;
  const node = selected?.kind === "node" ? graph.nodes.find((n) => n.id === selected.id) : undefined;
  const edge = selected?.kind === "edge" ? graph.edges.find((e) => e.id === selected.id) : undefined;

  return (
    <Page
      title="Map"
      actions={
        <>
          <WindowPicker value={since} onChange={setSince} />
          <button onClick={() => setExpanded({ apps: new Set(), tiers: new Set() })} disabled={expanded.apps.size === 0}>
            Collapse all
          </button>
          <button onClick={() => setTick((t) => t + 1)}>Refresh</button>
        </>
      }
    >
      <ErrorBox error={error} />
      <div className="map-info row">
        <Legend />
        {base && (
          <span className="muted" data-testid="map-summary">
            {num(base.total.connections)} connections, {num(base.total.drops)} drop records; compliance against revision r
            {base.revision}
          </span>
        )}
        {loading && <span className="muted">Loading…</span>}
      </div>
      {base && base.edges.length === 0 && !loading && (
        <p className="empty">No flows in this window: agents report flows, or import them (bulkhead import flows).</p>
      )}
      <div className="map-split">
        <Canvas graph={graph} revision={base?.revision ?? 0} ready={!loading && !!base} selected={selected} onSelect={setSelected} onToggle={toggle} />
        <aside className="side" data-testid="side-panel">
          {!selected && (
            <p className="muted">
              Click an edge for its flows and the rules that decided them, a node for its workloads, tags and rules.
              Double-click an app to see its tiers, a tier to see its workloads.
            </p>
          )}
          {node && <NodePanel node={node} since={since} policy={policy.data} expanded={isExpanded(node, expanded)} onToggle={() => toggle(node.id)} />}
          {edge && <EdgePanel edge={edge} graph={graph} since={since} policy={policy.data} />}
        </aside>
      </div>
    </Page>
  );
}

function isExpanded(n: DisplayNode, x: Expansion) {
  if (n.kind === "app") return x.apps.has(n.id.slice(2));
  if (n.kind === "tier") return x.tiers.has(n.id.slice(2));
  return false;
}

// scopeFromId turns "prod/shop" (or "shop") and "prod/shop/web" into the
// node's tag expression. Ids have the env only when the workloads have one.
function scopeFromId(id: string, level: "app" | "tier") {
  const parts = id.split("/");
  const want = level === "app" ? 1 : 2;
  const env = parts.length > want ? parts[0] : undefined;
  const rest = env ? parts.slice(1) : parts;
  return scopeOf({ env, app: rest[0], tier: rest[1] }, level);
}

function Legend() {
  const item = (cls: keyof typeof classColours, label: string) => (
    <span className="legend-item">
      <span className={`swatch ${cls}`} /> {label}
    </span>
  );
  return (
    <span className="legend" data-testid="legend">
      {item("green", "allowed by a rule")}
      {item("amber", "unprotected (default rule)")}
      {item("red", "blocked")}
      {item("dashed", "staged rule would block")}
    </span>
  );
}

const style: cytoscape.StylesheetJson = [
  {
    selector: "node",
    style: {
      label: "data(label)",
      "font-size": 12,
      "text-valign": "bottom",
      "text-margin-y": 4,
      "background-color": "#1f5fbf",
      width: 34,
      height: 34,
      color: "#1d2330",
    },
  },
  { selector: "node[kind = 'tier']", style: { "background-color": "#3b7dd8", shape: "round-rectangle" } },
  { selector: "node[kind = 'workload']", style: { "background-color": "#6d9be0", width: 24, height: 24, "font-size": 11 } },
  { selector: "node[kind = 'more']", style: { "background-color": "#e3e6eb", shape: "round-rectangle", color: "#667085" } },
  { selector: "node[kind = 'external']", style: { "background-color": "#4a5568", shape: "diamond" } },
  {
    selector: ":parent",
    style: {
      "background-color": "#eef4ff",
      "background-opacity": 0.6,
      "border-color": "#9cb8e6",
      "border-width": 1,
      shape: "round-rectangle",
      "text-valign": "top",
      "text-halign": "center",
      "font-weight": "bold",
      padding: "14px",
    },
  },
  { selector: "node[kind = 'env']:parent", style: { "background-color": "#f6f7f9", "border-style": "dashed", "border-color": "#98a2b3" } },
  { selector: "node:selected", style: { "border-width": 3, "border-color": "#1d2330" } },
  {
    selector: "edge",
    style: {
      width: "data(width)",
      "curve-style": "bezier",
      "target-arrow-shape": "triangle",
      "line-color": classColours.none,
      "target-arrow-color": classColours.none,
      "arrow-scale": 0.9,
    },
  },
  ...(["green", "amber", "red", "dashed"] as const).map((c) => ({
    selector: `edge.${c}`,
    style: { "line-color": classColours[c], "target-arrow-color": classColours[c] },
  })),
  { selector: "edge.dashed", style: { "line-style": "dashed" as const } },
  // IDS alerts on an edge: its count as the edge's label.
  {
    selector: "edge[alerts > 0]",
    style: { label: "data(label)", "font-size": 11, color: "#b42318", "text-background-color": "#ffffff", "text-background-opacity": 0.85 },
  },
  { selector: "edge:selected", style: { "overlay-opacity": 0.15, "overlay-color": "#1d2330" } },
];

function elements(g: Graph): ElementDefinition[] {
  const pos = layout(g);
  const out: ElementDefinition[] = [];
  for (const n of g.nodes) {
    out.push({
      group: "nodes",
      data: { id: n.id, label: n.kind === "external" ? `outside: ${n.label}` : n.label, kind: n.kind, parent: n.parent },
      position: pos.get(n.id) ?? { x: 0, y: 0 },
    });
  }
  for (const e of g.edges) {
    out.push({
      group: "edges",
      data: {
        id: e.id, source: e.from, target: e.to, cls: e.cls, width: Math.min(8, 1.5 + Math.log10(1 + e.connections + e.drops) * 2),
        alerts: e.alerts, label: e.alerts > 0 ? `${e.alerts} IDS alert${e.alerts === 1 ? "" : "s"}` : "",
      },
      classes: e.cls,
    });
  }
  return out;
}

// Cytoscape adds a <style> element to the page on first use, which the
// manager's Content-Security-Policy (no inline styles) refuses. It skips
// that when an element with the stylesheet's id exists; the rule it would
// add is in style.css.
function cspSafeCytoscape() {
  const id = "__________cytoscape_stylesheet";
  if (document.getElementById(id)) return;
  const marker = document.createElement("meta");
  marker.id = id;
  document.head.prepend(marker);
}

function Canvas(props: {
  graph: Graph;
  revision: number;
  ready: boolean;
  selected: Selection;
  onSelect: (s: Selection) => void;
  onToggle: (id: string) => void;
}) {
  const box = useRef<HTMLDivElement>(null);
  const cy = useRef<Core | null>(null);
  const handlers = useRef(props);
  handlers.current = props;

  useEffect(() => {
    cspSafeCytoscape();
    const c = cytoscape({ container: box.current, style, layout: { name: "preset" }, wheelSensitivity: 0.3, minZoom: 0.1, maxZoom: 3 });
    cy.current = c;
    c.on("tap", "node", (e) => handlers.current.onSelect({ kind: "node", id: e.target.id() }));
    c.on("tap", "edge", (e) => handlers.current.onSelect({ kind: "edge", id: e.target.id() }));
    c.on("tap", (e) => {
      if (e.target === c) handlers.current.onSelect(null);
    });
    c.on("dbltap", "node", (e) => handlers.current.onToggle(e.target.id()));
    return () => {
      c.destroy();
      cy.current = null;
      delete window.__bulkheadMap;
    };
  }, []);

  useEffect(() => {
    const c = cy.current;
    if (!c) return;
    c.batch(() => {
      c.elements().remove();
      c.add(elements(props.graph));
    });
    c.fit(undefined, 30);
    if (props.selected) c.getElementById(props.selected.id).select();
    window.__bulkheadMap = {
      ready: props.ready,
      revision: props.revision,
      nodes: () => c.nodes().map((n) => ({ id: n.id(), kind: n.data("kind"), label: n.data("label"), parent: n.data("parent") })),
      edges: () =>
        c.edges().map((e) => ({
          id: e.id(),
          from: e.source().id(),
          to: e.target().id(),
          cls: e.data("cls"),
          colour: e.style("line-color"),
          style: e.style("line-style"),
          counts: props.graph.edges.find((d) => d.id === e.id())?.counts,
          drops: props.graph.edges.find((d) => d.id === e.id())?.drops ?? 0,
        })),
      expand: (id) => handlers.current.onToggle(id),
      select: (id) => handlers.current.onSelect({ kind: c.getElementById(id).isEdge() ? "edge" : "node", id }),
    };
    // The selection is kept across redraws, so no dependency on it here.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [props.graph, props.ready, props.revision]);

  return <div className="map-canvas" ref={box} data-testid="map-canvas" data-ready={props.ready ? "true" : "false"} />;
}

// workloadsOf lists the workloads a drawn node stands for, from the
// workload-level map of its scope (the workloads seen in the window).
async function workloadsOf(n: DisplayNode, since: Since): Promise<MapNode[]> {
  if (n.kind === "external") return [];
  if (n.kind === "workload") {
    const m = await get<MapResponse>(mapURL("workload", since, scopeOf(n, "tier")));
    return m.nodes.filter((x) => x.id === n.workload);
  }
  const level = n.kind === "app" ? "app" : "tier";
  const m = await get<MapResponse>(mapURL("workload", since, scopeOf(n, level)));
  return m.nodes.filter((x) => !x.external && (level === "app" ? appId(x) === appId(n) : tierId(x) === tierId(n)));
}

interface RuleRef {
  key: string;
  id?: number;
  action: string;
  mode?: string;
  as: string[];
}

// rulesFor lists the rules that name one of the groups (as scope, source
// or destination) and the sections applied to every workload.
function rulesFor(p: PolicyView, groups: Set<string>): { rules: RuleRef[]; everywhere: string[] } {
  const rules: RuleRef[] = [];
  const everywhere: string[] = [];
  for (const [name, sec] of Object.entries(p.set.policies ?? {})) {
    const scoped = (sec.spec.appliedTo ?? []).filter((g) => groups.has(g));
    if (!sec.spec.appliedTo?.length) everywhere.push(name);
    for (const r of sec.spec.rules) {
      const as: string[] = [];
      if (scoped.length) as.push(`applied to ${scoped.join(", ")}`);
      const src = (r.sources ?? []).filter((g) => groups.has(g));
      const dst = (r.destinations ?? []).filter((g) => groups.has(g));
      if (src.length) as.push(`from ${src.join(", ")}`);
      if (dst.length) as.push(`to ${dst.join(", ")}`);
      if (src.length || dst.length || scoped.length) {
        const key = `${name}/${r.name}`;
        rules.push({ key, id: p.set.ruleIDs?.[key], action: r.action, mode: r.mode, as });
      }
    }
  }
  return { rules, everywhere };
}

function NodePanel({ node, since, policy, expanded, onToggle }: {
  node: DisplayNode;
  since: Since;
  policy?: PolicyView;
  expanded: boolean;
  onToggle: () => void;
}) {
  const details = useLoad(async () => {
    const [wls, inventory] = await Promise.all([workloadsOf(node, since), get<Workload[]>("/resources/workloads")]);
    const names = new Set(wls.map((w) => w.workload ?? w.id));
    const groups = new Set<string>();
    if (policy) {
      const ms = await Promise.all(policy.groups.map((g) => groupMembers(g.metadata.name, policy.revision)));
      for (const m of ms) if (m.workloads.some((w) => names.has(w.name))) groups.add(m.group);
    }
    return { wls, inventory: new Map(inventory.map((w) => [w.metadata.name, w])), groups };
  }, [node.id, since, policy]);
  const d = details.data;
  const rules = policy && d ? rulesFor(policy, d.groups) : undefined;
  const shown = d?.wls.slice(0, 50) ?? [];
  const t = node.traffic;
  return (
    <div data-testid="node-panel">
      <h2>
        {node.kind === "external" ? `Outside: ${node.label}` : node.label} <span className="badge">{node.kind}</span>
      </h2>
      {node.env && <div className="muted">env {node.env}{node.app && ` · app ${node.app}`}{node.tier && ` · tier ${node.tier}`}</div>}
      {(node.kind === "app" || node.kind === "tier") && (
        <button onClick={onToggle}>{expanded ? "Collapse" : node.kind === "app" ? "Show tiers" : "Show workloads"}</button>
      )}
      {t && (
        <p>
          {num(t.connections)} connections, {num(t.drops)} drop records, {bytes(t.bytesSent + t.bytesReceived)}
          <br />
          <ComplianceBar counts={t.compliance} wide />
        </p>
      )}
      <ErrorBox error={details.error} />
      {details.loading && <p className="muted">Loading…</p>}
      {d && node.kind !== "external" && (
        <>
          <h3>Workloads ({d.wls.length})</h3>
          {d.wls.length === 0 && <p className="muted">None seen in this window.</p>}
          <ul className="plain" data-testid="node-workloads">
            {shown.map((w) => {
              const inv = d.inventory.get(w.workload ?? w.id);
              return (
                <li key={w.id}>
                  <strong>{w.workload ?? w.id}</strong> <span className="mono muted">{inv?.spec.ips.join(", ")}</span>{" "}
                  {inv && (
                    <Link to={`/inventory/${encodeURIComponent(inv.metadata.name)}`} label={`Sources and facts of ${inv.metadata.name}`}>
                      sources
                    </Link>
                  )}
                  <div>
                    <Tags tags={inv?.spec.tags} />
                  </div>
                </li>
              );
            })}
          </ul>
          {d.wls.length > shown.length && <p className="muted">{d.wls.length - shown.length} more</p>}
          <h3>Groups</h3>
          <p data-testid="node-groups">{[...d.groups].sort().join(", ") || <span className="muted">in no group</span>}</p>
          <h3>Rules that apply</h3>
          {rules && rules.rules.length === 0 && <p className="muted">No rule names its groups.</p>}
          {rules && rules.rules.length > 0 && (
            <table className="compact" data-testid="node-rules">
              <tbody>
                {rules.rules.map((r) => (
                  <tr key={r.key}>
                    <td className="mono">
                      {r.key}
                      {r.id !== undefined && <span className="muted"> #{r.id}</span>}
                    </td>
                    <td>
                      <span className={`action action-${r.action}`}>{r.action}</span>
                      {r.mode === "staged" && <span className="badge warn">staged</span>}
                    </td>
                    <td className="muted">{r.as.join("; ")}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          {rules && rules.everywhere.length > 0 && (
            <p className="muted">Sections applied to every workload: {rules.everywhere.join(", ")}.</p>
          )}
        </>
      )}
      {node.kind === "more" && (
        <p className="muted">
          The map draws the {maxWorkloadsPerTier} busiest workloads of a tier; this node stands for the other {node.hidden}.
        </p>
      )}
    </div>
  );
}

// inside tells whether a workload-level map node falls into a drawn node.
function inside(n: MapNode, d: DisplayNode, g: Graph): boolean {
  switch (d.kind) {
    case "external":
      return !!n.external && n.range === d.range;
    case "app":
      return !n.external && appId(n) === appId(d);
    case "tier":
      return !n.external && tierId(n) === tierId(d);
    case "workload":
      return !n.external && n.id === d.workload;
    case "more":
      return !n.external && tierId(n) === tierId(d) && !g.nodes.some((x) => x.kind === "workload" && x.workload === n.id);
  }
  return false;
}

interface Pair {
  from: string; // workload name or address, as GET /flows takes it
  to: string;
  records: number;
}

const maxPairs = 6;
const flowsPerPair = 8;
const maxDecisions = 24;

// pairsOf finds the workload pairs of a drawn edge: from its own fine
// edges when they are at the workload level, else from the workload-level
// map of one end's scope.
async function pairsOf(e: DisplayEdge, g: Graph, since: Since): Promise<Pair[]> {
  const end = (n: MapNode) => n.address ?? n.workload ?? n.id;
  let fine = e.fine.filter((f) => f.level === "workload").map((f) => ({ from: f.from, to: f.to, edge: f.edge }));
  if (fine.length < e.fine.length) {
    const from = g.nodes.find((n) => n.id === e.from)!;
    const to = g.nodes.find((n) => n.id === e.to)!;
    const anchor = from.kind !== "external" ? from : to;
    const m = await get<MapResponse>(mapURL("workload", since, scopeOf(anchor, anchor.kind === "app" ? "app" : "tier")));
    const byId = new Map(m.nodes.map((n) => [n.id, n]));
    fine = m.edges.flatMap((x) => {
      const a = byId.get(x.from);
      const b = byId.get(x.to);
      return a && b && inside(a, from, g) && inside(b, to, g) ? [{ from: a, to: b, edge: x }] : [];
    });
  }
  return fine
    .map((f) => ({ from: end(f.from), to: end(f.to), records: f.edge.connections + f.edge.drops }))
    .sort((a, b) => b.records - a.records);
}

function EdgePanel({ edge, graph, since, policy }: { edge: DisplayEdge; graph: Graph; since: Since; policy?: PolicyView }) {
  const from = graph.nodes.find((n) => n.id === edge.from);
  const to = graph.nodes.find((n) => n.id === edge.to);
  const flows = useLoad(async () => {
    const pairs = await pairsOf(edge, graph, since);
    const lists = await Promise.all(
      pairs.slice(0, maxPairs).map((p) =>
        get<Flow[]>(`/flows?from=${encodeURIComponent(p.from)}&to=${encodeURIComponent(p.to)}&since=${encodeURIComponent(flowsSince(since))}&limit=${flowsPerPair}`),
      ),
    );
    const all = lists.flat();
    // How the latest revision decides each distinct flow, for the first few.
    const key = (f: Flow) => `${f.src}|${f.dst}|${f.proto}|${f.dstPort ?? ""}|${f.icmpType ?? ""}`;
    const distinct = [...new Map(all.map((f) => [key(f), f])).values()].slice(0, maxDecisions);
    const decided = new Map<string, EvalResponse>();
    await Promise.all(distinct.map(async (f) => decided.set(key(f), await decide(f))));
    return { pairs, flows: all, decided, key };
  }, [edge.id, since, edge.connections, edge.drops]);
  const d = flows.data;
  return (
    <div data-testid="edge-panel" data-class={edge.cls}>
      <h2>
        {from?.label} → {to?.label}
      </h2>
      <p>
        <span className={`badge cls-${edge.cls}`} data-testid="edge-class">
          {edge.cls === "none" ? "not classified" : edge.cls}
        </span>{" "}
        {num(edge.connections)} connections, {num(edge.drops)} drop records, {bytes(edge.bytes)}
        {edge.alerts > 0 && <span data-testid="edge-alerts">, {num(edge.alerts)} IDS alerts</span>}
      </p>
      <ComplianceBar counts={edge.counts} wide />
      <table className="compact counts" data-testid="edge-counts">
        <tbody>
          <tr>
            <td><span className="swatch green" /> allowed by a rule</td>
            <td className="num">{num(edge.counts.green)}</td>
          </tr>
          <tr>
            <td><span className="swatch amber" /> default rule only</td>
            <td className="num">{num(edge.counts.amber)}</td>
          </tr>
          <tr>
            <td><span className="swatch red" /> blocked</td>
            <td className="num">{num(edge.counts.red)}</td>
          </tr>
          <tr>
            <td><span className="swatch dashed" /> staged rule would block</td>
            <td className="num">{num(edge.counts.dashed)}</td>
          </tr>
        </tbody>
      </table>
      <p className="muted">
        First seen {when(edge.firstSeen)}, last seen {when(edge.lastSeen)}. Services:{" "}
        {edge.services.map((s) => `${s.service} (${s.connections}${s.drops ? `, ${s.drops} dropped` : ""})`).join(", ")}
      </p>
      <h3>Flows</h3>
      <ErrorBox error={flows.error} />
      {flows.loading && <p className="muted">Loading…</p>}
      {d && (
        <>
          <p className="muted">
            {d.pairs.length} workload pair{d.pairs.length === 1 ? "" : "s"}
            {d.pairs.length > maxPairs && `; the ${maxPairs} busiest shown`}, newest {flowsPerPair} flows of each. "Decided by" is the rule the data plane
            recorded; "now" how revision r{policy?.revision ?? "?"} decides the flow.
          </p>
          <table className="compact" data-testid="edge-flows">
            <thead>
              <tr>
                <th>Flow</th>
                <th>Decided by</th>
                <th>Now</th>
              </tr>
            </thead>
            <tbody>
              {d.flows.map((f) => {
                const now = d.decided.get(d.key(f));
                return (
                  <tr key={f.id}>
                    <td className="mono">
                      {f.srcWorkload ?? f.src} → {f.dstWorkload ?? f.dst} {f.proto}
                      {f.dstPort ? `/${f.dstPort}` : ""}
                      <div className="muted">
                        {f.kind} · {when(f.seen)}
                      </div>
                    </td>
                    <td>
                      <span className={`action action-${f.verdict}`}>{f.verdict}</span> <span className="mono">{ruleName(policy, f.ruleId)}</span>
                    </td>
                    <td>
                      {now ? (
                        <>
                          <span className={`action action-${now.verdict}`}>{now.verdict}</span> <span className="mono">{now.rule}</span>
                          {now.stagedRule && <div className="muted">staged: {now.stagedVerdict} by {now.stagedRule}</div>}
                        </>
                      ) : (
                        <span className="muted">not asked</span>
                      )}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </>
      )}
    </div>
  );
}
