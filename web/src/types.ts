// The REST API's shapes (internal/api and internal/policy), as the console
// reads them.

export type Role = "admin" | "operator" | "auditor";

export interface WhoAmI {
  name: string;
  role: Role;
}

export interface FieldError {
  file?: string;
  index?: number;
  kind?: string;
  name?: string;
  field?: string;
  line?: number;
  column?: number;
  reason: string;
  message: string;
}

export interface Metadata {
  name: string;
  description?: string;
  labels?: Record<string, string>;
}

export interface Resource<K extends string, S> {
  apiVersion: string;
  kind: K;
  metadata: Metadata;
  spec: S;
}

export type Workload = Resource<"Workload", {
  ips: string[];
  host?: string;
  interface?: string;
  tags?: Record<string, string>;
  os?: string;
  facts?: Record<string, string>;
}>;

export type Group = Resource<"Group", {
  match?: string;
  ips?: string[];
  groups?: string[];
  users?: string[];
  directoryGroups?: string[];
  fqdns?: string[];
}>;

export type Action = "allow" | "drop" | "reject";
export type Direction = "in" | "out" | "inout";
export type Mode = "enforce" | "staged";

export interface Rule {
  name: string;
  description?: string;
  sources?: string[];
  destinations?: string[];
  services?: string[];
  profiles?: string[];
  action: Action;
  direction?: Direction;
  log?: boolean;
  mode?: Mode;
}

export const categories = ["Emergency", "Infrastructure", "Environment", "Application"] as const;
export type Category = (typeof categories)[number];

export type Policy = Resource<"Policy", {
  category: Category;
  priority?: number;
  appliedTo?: string[];
  rules: Rule[];
}>;

export type DefaultRule = Resource<"DefaultRule", { action: Action; log?: boolean }>;

export interface PolicySet {
  policies?: Record<string, Policy>;
  default?: DefaultRule;
  ruleIDs?: Record<string, number>;
}

export interface Revision {
  number: number;
  author: string;
  time: string;
  summary: string;
  rollback?: number;
}

export interface RevisionDetail extends Revision {
  set: PolicySet;
}

// policy.Change has no JSON tags: its fields keep their Go names.
export interface Change {
  Kind: string;
  Name: string;
  Op: "created" | "updated" | "deleted";
  Diff: string;
}

export interface ApplyResponse {
  revision: number;
  changes: Change[];
  dryRun?: boolean;
}

export interface DiffResponse {
  from: number;
  to: number;
  changes: Change[];
}

export interface Host {
  name: string;
  connected: boolean;
  inSync: boolean;
  lastSeen?: string;
  enrolled: string;
  revoked?: string;
  realizedRevision: number;
  desiredRevision: number;
  publishedRevision: number;
  workloads: number;
  lastError?: string;
  certFingerprint: string;
}

export interface AuditEntry {
  id: number;
  time: string;
  actor: string;
  action: string;
  object?: string;
  revision?: number;
  diff?: string;
}

// Analysis (internal/api/analysis.go): the map, compliance, what-if.

export type Level = "env" | "app" | "tier" | "workload";
export type ComplianceClass = "green" | "amber" | "red" | "dashed";

export interface ComplianceCounts {
  green: number;
  amber: number;
  red: number;
  dashed: number;
  total: number;
}

export interface Traffic {
  connections: number;
  drops: number;
  droppedPackets?: number;
  bytesSent: number;
  bytesReceived: number;
  packets: number;
  firstSeen?: string;
  lastSeen?: string;
  compliance?: ComplianceCounts;
}

export interface MapNode {
  id: string;
  level: Level;
  env?: string;
  app?: string;
  tier?: string;
  workload?: string;
  external?: boolean;
  address?: string;
  range?: string;
  members: number;
  proposed?: number;
  traffic: Traffic;
  // IDS alerts the node is an end of in the window.
  alerts?: number;
}

export interface MapService {
  service: string;
  connections: number;
  drops?: number;
}

export interface MapEdge extends Traffic {
  from: string;
  to: string;
  services: MapService[];
  moreServices?: number;
  // IDS alerts between the edge's ends in the window.
  alerts?: number;
}

export interface AnalysisWindow {
  since?: string;
  until?: string;
}

export interface MapResponse {
  level: Level;
  window: AnalysisWindow;
  scope?: string;
  revision: number;
  nodes: MapNode[];
  edges: MapEdge[];
  total: Traffic;
  alerts?: number;
}

export interface ComplianceRow {
  node?: string;
  from?: string;
  to?: string;
  counts: ComplianceCounts;
  proposed?: number;
}

export interface ComplianceResponse {
  level: Level;
  window: AnalysisWindow;
  revision: number;
  nodes: ComplianceRow[];
  edges: ComplianceRow[];
  total: ComplianceCounts;
}

export interface WhatIfOutcome {
  verdict: string;
  ruleId: number;
  rule: string;
}

export interface WhatIfExample {
  change: "drop" | "allow";
  src: string;
  dst: string;
  srcWorkload?: string;
  dstWorkload?: string;
  from: string;
  to: string;
  service: string;
  flows: number;
  bytes: number;
  lastSeen?: string;
  before: WhatIfOutcome;
  after: WhatIfOutcome;
}

export interface WhatIfResponse {
  baseline: number;
  candidate: string;
  level: Level;
  window: AnalysisWindow;
  records: number;
  wouldDrop: number;
  wouldAllow: number;
  changed: number;
  edges: { from: string; to: string; wouldDrop: number; wouldAllow: number }[];
  examples: WhatIfExample[];
}

// Recommendations (internal/api/discovery.go).

export interface WireDocument {
  source: { File: string; Index: number };
  object: Resource<string, unknown>;
}

export interface RuleEvidence {
  flows: number;
  bytes: number;
  firstSeen?: string;
  lastSeen?: string;
  examples?: string[];
}

export interface Scanner {
  address: string;
  workload?: string;
  failed: number;
  targets: number;
  ports: number;
  connections: number;
  first?: string;
  last?: string;
  examples?: string[];
}

export interface RecommendResponse {
  documents: WireDocument[];
  evidence: Record<string, RuleEvidence>;
  changes: { incremental: boolean; added?: string[]; unchanged?: string[]; stale?: string[]; removed?: string[] };
  reused?: string[];
  since: string;
  until: string;
  records: number;
  connections: number;
  refused?: number;
  scanners?: Scanner[];
  revision?: number;
  applied?: Change[];
}

// Flows (internal/api/flow.go) and the evaluator's answer (POST /eval).

export interface Flow {
  id: string;
  kind: "update" | "end" | "drop";
  host: string;
  src: string;
  dst: string;
  proto: string;
  srcPort?: number;
  dstPort?: number;
  icmpType?: number;
  icmpCode?: number;
  srcWorkload?: string;
  dstWorkload?: string;
  srcBytes: number;
  srcPackets: number;
  dstBytes: number;
  dstPackets: number;
  start: string;
  end?: string;
  seen: string;
  ruleId: number;
  verdict: string;
  stagedRuleId?: number;
}

export interface EvalResponse {
  revision: number;
  verdict: string;
  ruleId: number;
  rule: string;
  enforced: boolean;
  stagedVerdict?: string;
  stagedRuleId?: number;
  stagedRule?: string;
}

// Group membership (internal/api/groups.go).

export interface GroupMembers {
  group: string;
  revision: number;
  workloads: { name: string; ips: string[] }[];
  addresses: string[];
  users?: string[];
  fqdns?: string[];
}

// Inventory sources, facts and conflicts (internal/api/inventory.go).

export interface Fact {
  workload: string;
  source: string;
  kind: string; // agent, operator, vcenter, cmdb
  key?: string;
  attribute: string; // name, ip, tag.KEY, os, ...
  value: string;
  observed?: string;
  age?: string;
  stale?: boolean;
  used: boolean;
  reason: string;
}

export interface Conflict {
  subject: string;
  claims: Fact[]; // the first was used
}

export interface WorkloadFacts {
  workload: string;
  exists: boolean;
  facts: Fact[];
}

export interface Source {
  name: string;
  kind: string;
  url?: string;
  user?: string;
  insecure?: boolean;
  interval?: string;
  configured: boolean;
  records: number;
  lastSync?: string;
  lastError?: string;
}

export interface SourceRequest {
  name: string;
  kind: "vcenter";
  url: string;
  user?: string;
  password?: string;
  insecure?: boolean;
  interval?: string;
}

export interface InventoryResult {
  source: string;
  rows: number;
  bad: { line: number; record?: number; reason: string }[];
  newRecords: number;
  changedRecords: number;
  unchangedRecords: number;
  removedRecords: number;
  created: string[];
  updated: string[];
  deleted: string[];
  skipped?: string[];
  conflicts: Conflict[];
}

// IDS/IPS (internal/api/ids.go, internal/api/ids_alerts.go, internal/policy/ids.go).

export type IDSMode = "detect" | "prevent";

export interface IDSSignatureFilter {
  maxSeverity?: number;
  classtypes?: string[];
  excludeClasstypes?: string[];
  metadata?: Record<string, string[]>;
  cves?: string[];
  sids?: number[];
  excludeSids?: number[];
  signatureSets?: string[];
}

export type IDSProfile = Resource<"IDSProfile", {
  appliedTo?: string[];
  mode: IDSMode;
  signatures?: IDSSignatureFilter;
  workloadAware?: boolean;
  preventAction?: "asWritten" | "drop" | "reject";
}>;

export interface IDSSignatureSet {
  name: string;
  version: number;
  rules: number;
  problems: number;
  created: string;
  author: string;
  sha256: string;
  shadowed?: number;
}

export interface IDSWorkloadFacts {
  os?: string;
  roles?: string[];
  rolesFrom?: string;
  served?: string[];
  rolesKnown: boolean;
}

export interface IDSSignature {
  sid: number;
  rev?: number;
  set: string;
  msg: string;
  action: string;
  proto: string;
  classtype?: string;
  priority: number;
  profiles?: string[];
  prevent?: boolean;
  enforced?: "drop" | "reject";
  rule?: string;
}

export interface IDSLeftOut {
  sid: number;
  msg: string;
  profile: string;
  reason: string;
}

export interface IDSSignatures {
  workload?: string;
  host?: string;
  interface?: string;
  mode?: IDSMode;
  profiles?: string[];
  facts?: IDSWorkloadFacts;
  signatures: IDSSignature[];
  leftOut?: IDSLeftOut[];
  why?: string[];
}

// EVEAlert is a Suricata EVE alert record as the manager stores it; the
// app-layer objects (http, tls, dns, ssh, flow, ...) are kept as sent.
export interface EVEAlert {
  timestamp: string;
  flow_id?: number;
  in_iface?: string;
  event_type: "alert";
  src_ip: string;
  src_port?: number;
  dest_ip: string;
  dest_port?: number;
  proto: string;
  app_proto?: string;
  alert: {
    action: "allowed" | "blocked";
    gid: number;
    signature_id: number;
    rev: number;
    signature: string;
    category: string;
    severity: number;
  };
  bulkhead: {
    host?: string;
    src_workload?: string;
    dest_workload?: string;
    interface?: string;
    profile?: string;
    mode?: IDSMode;
  };
  [field: string]: unknown;
}
