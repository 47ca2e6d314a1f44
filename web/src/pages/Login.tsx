import { useState, type FormEvent } from "react";
import { call } from "../api";
import { ErrorBox } from "../common";
import type { WhoAmI } from "../types";

export function Login({ onLogin }: { onLogin: (secret: string, who: WhoAmI) => void }) {
  const [secret, setSecret] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const s = secret.trim();
    if (!s) return;
    setBusy(true);
    setError(null);
    try {
      onLogin(s, await call<WhoAmI>("GET", "/whoami", undefined, s));
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };

  return (
    <div className="login">
      <form onSubmit={submit}>
        <h1>Bulkhead</h1>
        <p className="muted">
          Paste an API token: the manager's admin token (<code>admin.token</code> in its data directory) or one made with{" "}
          <code>bulkhead apitoken create</code>. Your role decides what you can change.
        </p>
        <label htmlFor="token">API token</label>
        <input
          id="token"
          type="password"
          autoComplete="off"
          value={secret}
          onChange={(e) => setSecret(e.target.value)}
          placeholder="bh_…"
          autoFocus
        />
        <button type="submit" className="primary" disabled={busy || !secret.trim()}>
          {busy ? "Checking…" : "Log in"}
        </button>
        <ErrorBox error={error} />
      </form>
    </div>
  );
}
