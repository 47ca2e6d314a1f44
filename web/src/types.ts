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
