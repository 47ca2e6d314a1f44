// The console's only way to the manager: the public REST API under /api/v1
// with the bearer token the user logged in with. The token lives in
// sessionStorage, so it ends with the browser tab.
import type { ApplyResponse, FieldError, Resource } from "./types";

const prefix = "/api/v1";
const tokenKey = "bulkhead.token";

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly details: FieldError[] = [],
  ) {
    super(message);
  }
}

export function token(): string | null {
  return sessionStorage.getItem(tokenKey);
}

export function setToken(secret: string | null) {
  if (secret) sessionStorage.setItem(tokenKey, secret);
  else sessionStorage.removeItem(tokenKey);
}

// unauthorized is called on every 401 (token expired or revoked): the app
// goes back to the login page.
let unauthorized: () => void = () => {};
export function onUnauthorized(fn: () => void) {
  unauthorized = fn;
}

export async function call<T>(method: string, path: string, body?: unknown, secret = token()): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (secret) headers.Authorization = `Bearer ${secret}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let resp: Response;
  try {
    resp = await fetch(prefix + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, `manager unreachable: ${(e as Error).message}`);
  }
  const text = await resp.text();
  let data: unknown = undefined;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = undefined;
    }
  }
  if (!resp.ok) {
    const e = (data ?? {}) as { error?: string; details?: FieldError[] };
    const err = new ApiError(resp.status, e.error || `${method} ${path}: HTTP ${resp.status}`, e.details ?? []);
    if (resp.status === 401 && secret === token()) unauthorized();
    throw err;
  }
  return data as T;
}

export const get = <T>(path: string) => call<T>("GET", path);
export const post = <T>(path: string, body: unknown) => call<T>("POST", path, body);

// apply sends whole objects as one revision (or only computes its changes
// when dryRun is set), as `bulkhead apply` does.
export function apply(objects: Resource<string, unknown>[], opts: { dryRun?: boolean; summary?: string } = {}) {
  return post<ApplyResponse>("/apply", {
    documents: objects.map((object, i) => ({ source: { File: "console", Index: i + 1 }, object })),
    dryRun: opts.dryRun || undefined,
    summary: opts.summary || undefined,
  });
}
