// What the Map, Recommendations and Compliance pages share: the time
// window, the latest policy with its rule names, and live group membership.
import { get, post } from "./api";
import type { EvalResponse, Flow, Group, GroupMembers, PolicySet, Revision, RevisionDetail } from "./types";

// A window is how far back the pages look: a preset duration or a custom
// start time (RFC 3339).
export type Since = "1h" | "24h" | "7d" | { from: string };

export const presets: { value: Since; label: string }[] = [
  { value: "1h", label: "Last hour" },
  { value: "24h", label: "Last 24 hours" },
  { value: "7d", label: "Last 7 days" },
];

// sinceParam is the window as the map, compliance, what-if and recommend
// APIs take it ("7d" included).
export function sinceParam(s: Since): string {
  return typeof s === "string" ? s : s.from;
}

// flowsSince is the window as GET /flows takes it: a Go duration or RFC
// 3339, no days.
export function flowsSince(s: Since): string {
  if (s === "7d") return "168h";
  return sinceParam(s);
}

export interface PolicyView {
  revision: number;
  set: PolicySet;
  ruleNames: Map<number, string>; // rule id -> "policy/rule"
  groups: Group[];
}

// loadPolicy reads the latest revision and names its rules by id.
export async function loadPolicy(): Promise<PolicyView> {
  const [revs, groups] = await Promise.all([get<Revision[]>("/revisions?limit=1"), get<Group[]>("/resources/groups")]);
  let set: PolicySet = {};
  let revision = 0;
  if (revs.length > 0) {
    const d = await get<RevisionDetail>(`/revisions/${revs[0].number}`);
    set = d.set;
    revision = d.number;
  }
  const ruleNames = new Map<number, string>([[1, "default"]]);
  for (const [key, id] of Object.entries(set.ruleIDs ?? {})) ruleNames.set(id, key);
  return { revision, set, ruleNames, groups };
}

export function ruleName(p: PolicyView | undefined, id: number): string {
  if (id === 0) return "none (not enforced)";
  return p?.ruleNames.get(id) ?? `rule ${id}`;
}

// Membership answers are kept per revision: the inventory moves them too,
// so a page asks again when it reloads.
const members = new Map<string, Promise<GroupMembers>>();

export function groupMembers(group: string, revision: number): Promise<GroupMembers> {
  const key = `${revision}\u0000${group}`;
  let m = members.get(key);
  if (!m) {
    m = get<GroupMembers>(`/groups/${encodeURIComponent(group)}/members${revision ? `?revision=${revision}` : ""}`);
    m.catch(() => members.delete(key));
    members.set(key, m);
  }
  return m;
}

export function forgetMembers() {
  members.clear();
}

// decide asks the evaluator how the latest revision decides a recorded
// flow.
export function decide(f: Flow): Promise<EvalResponse> {
  const body: Record<string, unknown> = { from: f.src, to: f.dst, proto: f.proto };
  if (f.dstPort) body.port = f.dstPort;
  if (f.icmpType !== undefined) body.icmpType = f.icmpType;
  if (f.icmpCode !== undefined) body.icmpCode = f.icmpCode;
  return post<EvalResponse>("/eval", body);
}

export function bytes(n: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

export const num = (n: number) => n.toLocaleString("en-US");
