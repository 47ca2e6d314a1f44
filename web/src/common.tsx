// Small pieces every page uses: loading data, showing API errors, the route.
import { useCallback, useEffect, useState, type ReactNode } from "react";
import { ApiError } from "./api";
import { presets, type Since } from "./analysis";
import type { ComplianceCounts } from "./types";

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

// navigate moves to a client route from anywhere: useRoute hears it as it
// hears the back button.
export function navigate(to: string) {
  history.pushState(null, "", to);
  dispatchEvent(new PopStateEvent("popstate"));
}

// Link is an in-app link: a real href (open in a new tab works), client
// navigation on a plain click.
export function Link({ to, children, label }: { to: string; children: ReactNode; label?: string }) {
  return (
    <a
      href={to}
      aria-label={label}
      onClick={(e) => {
        if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey) return;
        e.preventDefault();
        navigate(to);
      }}
    >
      {children}
    </a>
  );
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

// WindowPicker chooses how far back a page looks: a preset or a custom
// start time.
export function WindowPicker({ value, onChange }: { value: Since; onChange: (s: Since) => void }) {
  const custom = typeof value !== "string";
  const [local, setLocal] = useState(() => {
    const d = new Date(Date.now() - 24 * 3600 * 1000);
    return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
  });
  return (
    <span className="row window-picker">
      <label className="muted" htmlFor="window">
        Window
      </label>
      <select
        id="window"
        aria-label="Window"
        value={custom ? "custom" : value}
        onChange={(e) => {
          const v = e.target.value;
          if (v === "custom") onChange({ from: new Date(local).toISOString() });
          else onChange(v as Since);
        }}
      >
        {presets.map((p) => (
          <option key={String(p.value)} value={String(p.value)}>
            {p.label}
          </option>
        ))}
        <option value="custom">Since…</option>
      </select>
      {custom && (
        <input
          type="datetime-local"
          aria-label="Since"
          value={local}
          onChange={(e) => {
            setLocal(e.target.value);
            const t = new Date(e.target.value);
            if (!isNaN(t.getTime())) onChange({ from: t.toISOString() });
          }}
        />
      )}
    </span>
  );
}

// Counts shows compliance counts as a bar and numbers.
export function ComplianceBar({ counts, wide }: { counts?: ComplianceCounts; wide?: boolean }) {
  if (!counts || counts.total === 0) return <span className="muted">no flows</span>;
  const part = (k: keyof ComplianceCounts) => `${(100 * counts[k]) / counts.total}%`;
  return (
    <span className={wide ? "cbar wide" : "cbar"} title={`green ${counts.green}, amber ${counts.amber}, red ${counts.red}, dashed ${counts.dashed}`}>
      <span className="seg green" style={{ width: part("green") }} />
      <span className="seg dashed" style={{ width: part("dashed") }} />
      <span className="seg amber" style={{ width: part("amber") }} />
      <span className="seg red" style={{ width: part("red") }} />
    </span>
  );
}
