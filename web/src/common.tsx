// Small pieces every page uses: loading data, showing API errors, the route.
import { useCallback, useEffect, useState, type ReactNode } from "react";
import { ApiError } from "./api";

export function useRoute(): [string, (to: string) => void] {
  const [path, setPath] = useState(location.pathname);
  useEffect(() => {
    const on = () => setPath(location.pathname);
    addEventListener("popstate", on);
    return () => removeEventListener("popstate", on);
  }, []);
  const go = useCallback((to: string) => {
    if (to !== location.pathname) history.pushState(null, "", to);
    setPath(to);
  }, []);
  return [path, go];
}

export interface Loaded<T> {
  data?: T;
  error?: unknown;
  loading: boolean;
  reload: () => void;
}

// useLoad runs fn on mount and on reload(); the last answer wins.
export function useLoad<T>(fn: () => Promise<T>, deps: unknown[] = []): Loaded<T> {
  const [state, setState] = useState<{ data?: T; error?: unknown; loading: boolean }>({ loading: true });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    setState((s) => ({ ...s, loading: true }));
    fn().then(
      (data) => live && setState({ data, loading: false }),
      (error) => live && setState({ error, loading: false }),
    );
    return () => {
      live = false;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [tick, ...deps]);
  return { ...state, reload: useCallback(() => setTick((t) => t + 1), []) };
}

export function ErrorBox({ error }: { error: unknown }) {
  if (!error) return null;
  const e = error as Error;
  const details = error instanceof ApiError ? error.details : [];
  return (
    <div className="error" role="alert">
      <strong>{error instanceof ApiError && error.status ? `${error.status}: ` : ""}</strong>
      {e.message ?? String(error)}
      {details.length > 0 && (
        <ul>
          {details.map((d, i) => (
            <li key={i}>
              {[d.kind && d.name ? `${d.kind} ${d.name}` : "", d.field, d.line ? `line ${d.line}` : ""].filter(Boolean).join(", ")}
              {": "}
              {d.message || d.reason}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

export function Page({ title, actions, children }: { title: string; actions?: ReactNode; children: ReactNode }) {
  return (
    <section className="page">
      <header className="page-head">
        <h1>{title}</h1>
        <div className="actions">{actions}</div>
      </header>
      {children}
    </section>
  );
}

export function Tags({ tags }: { tags?: Record<string, string> }) {
  const entries = Object.entries(tags ?? {}).sort(([a], [b]) => a.localeCompare(b));
  if (entries.length === 0) return <span className="muted">none</span>;
  return (
    <span className="tags">
      {entries.map(([k, v]) => (
        <span className="tag" key={k}>
          {k}={v}
        </span>
      ))}
    </span>
  );
}

export function when(t?: string) {
  if (!t) return "never";
  const d = new Date(t);
  return isNaN(d.getTime()) ? t : d.toLocaleString();
}

export function DiffText({ text }: { text: string }) {
  return (
    <pre className="diff">
      {text.split("\n").map((l, i) => (
        <span key={i} className={l.startsWith("+") ? "add" : l.startsWith("-") ? "del" : l.startsWith("@@") ? "hunk" : ""}>
          {l}
          {"\n"}
        </span>
      ))}
    </pre>
  );
}
