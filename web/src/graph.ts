// The map's model, apart from drawing: which nodes and edges to show for
// what is expanded, built from map answers at several levels, and where to
// put them. The map starts at the app level; expanding an app fetches the
// tier level for that app only, expanding a tier the workload level for
// that tier only, so the browser never holds more than it draws.
import type { ComplianceClass, ComplianceCounts, Level, MapEdge, MapNode, MapResponse, MapService } from "./types";

// A layer is one map answer: the base (app level, everything) or the finer
// level of one expanded app or tier (scope set).
export interface Layer {
  key: string; // "base", "app:<app id>", "tier:<tier id>"
  data: MapResponse;
}

export interface Expansion {
  apps: Set<string>; // app ids ("prod/shop") shown as their tiers
  tiers: Set<string>; // tier ids ("prod/shop/web") shown as their workloads
}

// At most this many workloads of one tier are drawn; the rest are one
// "N more" node.
export const maxWorkloadsPerTier = 24;

export type DisplayKind = "env" | "app" | "tier" | "workload" | "more" | "external";

export interface DisplayNode {
  id: string;
  kind: DisplayKind;
  label: string;
  parent?: string;
  compound: boolean;
  env?: string;
  app?: string;
  tier?: string;
  workload?: string;
  address?: string;
  range?: string;
  members: number;
  hidden?: number; // for "more": how many workloads it stands for
  traffic?: MapNode["traffic"];
}

// A fine edge is an edge of one layer, as the API gave it, with its layer's
// level: the display edge lists them for its side panel.
export interface FineEdge {
  level: Level;
  from: MapNode;
  to: MapNode;
  edge: MapEdge;
}

export interface DisplayEdge {
  id: string;
  from: string;
  to: string;
  cls: ComplianceClass | "none";
  counts: ComplianceCounts;
  connections: number;
  drops: number;
  bytes: number;
  // IDS alerts on the edge's fine edges.
  alerts: number;
  firstSeen?: string;
  lastSeen?: string;
  services: MapService[];
  fine: FineEdge[];
}

export interface Graph {
  nodes: DisplayNode[];
  edges: DisplayEdge[];
}

const rank: Record<Level, number> = { env: 0, app: 1, tier: 2, workload: 3 };
const coarser: Record<Level, Level> = { env: "env", app: "app", tier: "app", workload: "tier" };

export const appId = (n: { env?: string; app?: string }) => (n.env ? `${n.env}/${n.app}` : `${n.app}`);
export const tierId = (n: { env?: string; app?: string; tier?: string }) => `${appId(n)}/${n.tier}`;

// scopeOf is the tag expression of an app or tier for GET /map?scope=:
// "untagged" and a missing env are the absence of the tag.
export function scopeOf(n: { env?: string; app?: string; tier?: string }, level: "app" | "tier"): string {
  const q = (k: string, v?: string, none = "untagged") =>
    !v || v === none ? `!has(${k})` : `${k} == ${JSON.stringify(v)}`;
  const parts = [q("env", n.env, ""), q("app", n.app)];
  if (level === "tier") parts.push(q("tier", n.tier));
  return parts.join(" && ");
}

// classOf picks the edge's colour from its counts, the worst first: red
// (blocked), dashed (a staged rule would block), amber (only the default
// rule allows it), green (a rule allows it).
export function classOf(c?: ComplianceCounts): ComplianceClass | "none" {
  if (!c) return "none";
  if (c.red > 0) return "red";
  if (c.dashed > 0) return "dashed";
  if (c.amber > 0) return "amber";
  if (c.green > 0) return "green";
  return "none";
}

const zero = (): ComplianceCounts => ({ green: 0, amber: 0, red: 0, dashed: 0, total: 0 });

// layerOf names the layer that holds an endpoint's edges at a level.
function layerOf(n: MapNode, level: Level): string {
  if (level === "tier") return `app:${appId(n)}`;
  if (level === "workload") return `tier:${tierId(n)}`;
  return "base";
}

export function build(layers: Layer[], x: Expansion): Graph {
  const nodes = new Map<string, DisplayNode>();
  const edges = new Map<string, DisplayEdge>();
  const present = new Set(layers.map((l) => l.key));

  // drawnAt is the level an endpoint is drawn at: as expanded, as far as
  // the layers that have arrived allow.
  const drawnAt = (n: MapNode): Level => {
    if (n.external || !x.apps.has(appId(n))) return "app";
    let lv: Level = x.tiers.has(tierId(n)) ? "workload" : "tier";
    while (lv !== "app" && !present.has(layerOf(n, lv))) lv = coarser[lv];
    return lv;
  };

  // Workloads drawn per expanded tier: the busiest first, capped.
  const shown = new Set<string>();
  const hiddenPerTier = new Map<string, number>();
  for (const l of layers) {
    if (!l.key.startsWith("tier:")) continue;
    const t = l.key.slice(5);
    const ws = l.data.nodes
      .filter((n) => !n.external && n.level === "workload" && tierId(n) === t)
      .sort((a, b) => volume(b.traffic) - volume(a.traffic) || a.id.localeCompare(b.id));
    ws.slice(0, maxWorkloadsPerTier).forEach((n) => shown.add(n.id));
    if (ws.length > maxWorkloadsPerTier) hiddenPerTier.set(t, ws.length - maxWorkloadsPerTier);
  }

  const envNode = (env?: string) => {
    if (!env) return undefined;
    const id = `e:${env}`;
    if (!nodes.has(id)) nodes.set(id, { id, kind: "env", label: env, compound: true, env, members: 0 });
    return id;
  };
  const put = (d: DisplayNode) => {
    if (!nodes.has(d.id)) nodes.set(d.id, d);
    return nodes.get(d.id)!;
  };

  // displayOf returns the id of the drawn node an endpoint falls into,
  // creating it (and its parents) on first sight. own says the endpoint
  // comes from its own layer, whose numbers are the node's (a scoped layer
  // only counts the other end's traffic with the scope).
  const displayOf = (n: MapNode, own: boolean): string => {
    if (n.external) {
      const d = put({ id: `x:${n.range}`, kind: "external", label: n.range ?? "external", compound: false, range: n.range, members: 0 });
      if (own && n.level === "app") {
        d.members = n.members;
        d.traffic = n.traffic;
      }
      return d.id;
    }
    const at = drawnAt(n);
    const a = put({
      id: `a:${appId(n)}`, kind: "app", label: n.app ?? "untagged", parent: envNode(n.env), compound: false,
      env: n.env, app: n.app, members: 0,
    });
    if (n.level === "app") {
      a.members = n.members;
      a.traffic = n.traffic;
    }
    if (at === "app") return a.id;
    a.compound = true;
    const t = put({
      id: `t:${tierId(n)}`, kind: "tier", label: n.tier ?? "untagged", parent: a.id, compound: false,
      env: n.env, app: n.app, tier: n.tier, members: 0,
    });
    if (own && n.level === "tier") {
      t.members = n.members;
      t.traffic = n.traffic;
    }
    if (at === "tier") return t.id;
    t.compound = true;
    if (!shown.has(n.id)) {
      const hidden = hiddenPerTier.get(tierId(n)) ?? 0;
      return put({
        id: `m:${tierId(n)}`, kind: "more", label: `${hidden} more`, parent: t.id, compound: false,
        env: n.env, app: n.app, tier: n.tier, members: hidden, hidden,
      }).id;
    }
    const w = put({
      id: `w:${n.id}`, kind: "workload", label: n.workload ?? n.id, parent: t.id, compound: false,
      env: n.env, app: n.app, tier: n.tier, workload: n.workload ?? n.id, members: 1,
    });
    if (own) w.traffic = n.traffic;
    return w.id;
  };

  for (const l of layers) {
    const byId = new Map(l.data.nodes.map((n) => [n.id, n]));
    // A layer draws the nodes it owns (even those without an edge of their
    // own): the ones drawn at its level, in its scope.
    for (const n of l.data.nodes) {
      const own = n.external ? l.key === "base" : layerOf(n, drawnAt(n)) === l.key && n.level === drawnAt(n);
      if (own) displayOf(n, true);
    }
    for (const e of l.data.edges) {
      const from = byId.get(e.from);
      const to = byId.get(e.to);
      if (!from || !to) continue;
      // An edge belongs to the finest level either end is drawn at, and
      // to the layer of the first end drawn at it: no flow counts twice.
      const lf = drawnAt(from);
      const lt = drawnAt(to);
      const lv = rank[lf] >= rank[lt] ? lf : lt;
      const owner = [from, to]
        .filter((n) => drawnAt(n) === lv)
        .map((n) => layerOf(n, lv))
        .sort()[0];
      if (owner !== l.key) continue;
      const f = displayOf(from, false);
      const t = displayOf(to, false);
      const id = `${f}->${t}`;
      let d = edges.get(id);
      if (!d) {
        d = { id, from: f, to: t, cls: "none", counts: zero(), connections: 0, drops: 0, bytes: 0, alerts: 0, services: [], fine: [] };
        edges.set(id, d);
      }
      add(d, e);
      d.fine.push({ level: l.data.level, from, to, edge: e });
    }
  }
  // An expanded app keeps the base layer's totals for its side panel.
  for (const n of layers.find((l) => l.key === "base")?.data.nodes ?? []) {
    const d = !n.external && n.level === "app" ? nodes.get(`a:${appId(n)}`) : undefined;
    if (d && !d.traffic) {
      d.members = n.members;
      d.traffic = n.traffic;
    }
  }
  for (const d of edges.values()) d.cls = classOf(d.counts);
  return { nodes: [...nodes.values()], edges: [...edges.values()] };
}

function volume(t?: MapNode["traffic"]) {
  return t ? t.connections + t.drops : 0;
}

function add(d: DisplayEdge, e: MapEdge) {
  const c = e.compliance;
  if (c) {
    d.counts.green += c.green;
    d.counts.amber += c.amber;
    d.counts.red += c.red;
    d.counts.dashed += c.dashed;
    d.counts.total += c.total;
  }
  d.connections += e.connections;
  d.drops += e.drops;
  d.alerts += e.alerts ?? 0;
  d.bytes += e.bytesSent + e.bytesReceived;
  if (e.firstSeen && (!d.firstSeen || e.firstSeen < d.firstSeen)) d.firstSeen = e.firstSeen;
  if (e.lastSeen && (!d.lastSeen || e.lastSeen > d.lastSeen)) d.lastSeen = e.lastSeen;
  for (const s of e.services) {
    const have = d.services.find((x) => x.service === s.service);
    if (have) {
      have.connections += s.connections;
      have.drops = (have.drops ?? 0) + (s.drops ?? 0);
    } else d.services.push({ ...s });
  }
  d.services.sort((a, b) => b.connections + (b.drops ?? 0) - (a.connections + (a.drops ?? 0)));
}

// Layout: a layered drawing, left to right in the direction of traffic.
// Each env is a horizontal band; inside it, top-level items (apps and
// outside ranges) sit in columns by their longest path from a traffic
// source, the same columns in every band. An expanded app lays its tiers
// out the same way inside its box; an expanded tier is a grid of its
// workloads.

export interface Point {
  x: number;
  y: number;
}

const cell = { w: 190, h: 80 };
const pad = 40;

interface Box {
  w: number;
  h: number;
  place: (x: number, y: number, out: Map<string, Point>) => void; // x, y: top left
}

// ranks gives each item its longest path from a source over the edges,
// with edges that close a cycle left out (depth-first order).
export function ranks(items: string[], links: [string, string][]): Map<string, number> {
  const out = new Map<string, string[]>();
  for (const i of items) out.set(i, []);
  for (const [a, b] of links) if (a !== b && out.has(a) && out.has(b)) out.get(a)!.push(b);
  const state = new Map<string, number>(); // 1 open, 2 done
  const order: string[] = [];
  const kept = new Map<string, string[]>();
  const visit = (n: string) => {
    state.set(n, 1);
    for (const m of out.get(n)!) {
      if (state.get(m) === 1) continue; // back edge
      (kept.get(n) ?? kept.set(n, []).get(n)!).push(m);
      if (!state.has(m)) visit(m);
    }
    state.set(n, 2);
    order.push(n);
  };
  for (const i of [...items].sort()) if (!state.has(i)) visit(i);
  const r = new Map<string, number>(items.map((i) => [i, 0]));
  for (const n of order.reverse()) for (const m of kept.get(n) ?? []) r.set(m, Math.max(r.get(m)!, r.get(n)! + 1));
  return r;
}

export function layout(g: Graph): Map<string, Point> {
  const children = new Map<string | undefined, DisplayNode[]>();
  for (const n of g.nodes) {
    const k = n.parent;
    (children.get(k) ?? children.set(k, []).get(k)!).push(n);
  }
  for (const list of children.values()) list.sort((a, b) => a.id.localeCompare(b.id));
  const byId = new Map(g.nodes.map((n) => [n.id, n]));
  // ancestor returns the node's ancestor (or itself) whose parent is p.
  const ancestor = (id: string, p: string | undefined): string | undefined => {
    let n = byId.get(id);
    while (n && n.parent !== p) n = n.parent ? byId.get(n.parent) : undefined;
    return n?.id;
  };
  const linksAmong = (p: string | undefined): [string, string][] => {
    const out: [string, string][] = [];
    for (const e of g.edges) {
      const a = ancestor(e.from, p);
      const b = ancestor(e.to, p);
      if (a && b && a !== b) out.push([a, b]);
    }
    return out;
  };

  const leaf = (n: DisplayNode): Box => ({ w: cell.w, h: cell.h, place: (x, y, out) => out.set(n.id, { x: x + cell.w / 2, y: y + cell.h / 2 }) });

  const grid = (n: DisplayNode): Box => {
    const kids = children.get(n.id) ?? [];
    const cols = Math.max(1, Math.ceil(Math.sqrt(kids.length)));
    const rows = Math.ceil(kids.length / cols);
    return {
      w: cols * cell.w + pad,
      h: rows * cell.h + pad,
      place: (x, y, out) =>
        kids.forEach((k, i) => leaf(k).place(x + pad / 2 + (i % cols) * cell.w, y + pad / 2 + Math.floor(i / cols) * cell.h, out)),
    };
  };

  const boxOf = (n: DisplayNode): Box => {
    if (!n.compound) return leaf(n);
    if (n.kind === "tier") return grid(n);
    return columns(children.get(n.id) ?? [], linksAmong(n.id), pad);
  };

  // columns lays items out by rank; colW, when given, fixes column widths
  // shared with other bands.
  function columns(items: DisplayNode[], links: [string, string][], margin: number, colW?: number[], r?: Map<string, number>): Box {
    r ??= ranks(items.map((i) => i.id), links);
    const boxes = items.map((i) => ({ n: i, b: boxOf(i), r: r!.get(i.id) ?? 0 }));
    const ncol = Math.max(0, ...boxes.map((b) => b.r)) + 1;
    const widths = colW ?? Array.from({ length: ncol }, (_, c) => Math.max(0, ...boxes.filter((b) => b.r === c).map((b) => b.b.w)));
    const heights = Array.from({ length: ncol }, (_, c) =>
      boxes.filter((b) => b.r === c).reduce((h, b) => h + b.b.h + 20, 0),
    );
    const w = widths.reduce((s, x) => s + x + 60, 0) + margin;
    const h = Math.max(cell.h, ...heights) + margin;
    return {
      w,
      h,
      place: (x, y, out) => {
        let cx = x + margin / 2;
        for (let c = 0; c < widths.length; c++) {
          let cy = y + margin / 2;
          for (const b of boxes.filter((b) => b.r === c)) {
            b.b.place(cx + (widths[c] - b.b.w) / 2, cy, out);
            cy += b.b.h + 20;
          }
          cx += widths[c] + 60;
        }
      },
    };
  }

  // Top level: bands by env; items without an env (and outside ranges)
  // form the last band. Ranks are computed over every top-level item at
  // once so that the columns line up across bands.
  const top = children.get(undefined) ?? [];
  const topItems: DisplayNode[] = [];
  for (const t of top) {
    if (t.kind === "env") topItems.push(...(children.get(t.id) ?? []));
    else topItems.push(t);
  }
  const topOf = (id: string) => {
    let n = byId.get(id);
    while (n && n.parent && byId.get(n.parent)?.kind !== "env") n = byId.get(n.parent);
    return n?.id;
  };
  const topLinks: [string, string][] = [];
  for (const e of g.edges) {
    const a = topOf(e.from);
    const b = topOf(e.to);
    if (a && b && a !== b) topLinks.push([a, b]);
  }
  const r = ranks(
    topItems.map((i) => i.id),
    topLinks,
  );
  const ncol = Math.max(0, ...topItems.map((i) => r.get(i.id) ?? 0)) + 1;
  const colW = Array.from({ length: ncol }, (_, c) =>
    Math.max(cell.w, ...topItems.filter((i) => (r.get(i.id) ?? 0) === c).map((i) => boxOf(i).w)),
  );
  const bands: DisplayNode[][] = top.filter((t) => t.kind === "env").map((t) => children.get(t.id) ?? []);
  const loose = top.filter((t) => t.kind !== "env");
  if (loose.length) bands.push(loose);
  const out = new Map<string, Point>();
  let y = 0;
  for (const band of bands) {
    const b = columns(band, [], pad, colW, r);
    b.place(0, y, out);
    y += b.h + 40;
  }
  return out;
}
