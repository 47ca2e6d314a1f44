import { useEffect, useState } from "react";
import { call, onUnauthorized, setToken, token } from "./api";
import { useRoute } from "./common";
import type { WhoAmI } from "./types";
import { Login } from "./pages/Login";
import { Hosts } from "./pages/Hosts";
import { Inventory } from "./pages/Inventory";
import { PolicyPage } from "./pages/Policy";
import { History } from "./pages/History";
import { MapPage } from "./pages/Map";
import { Recommendations } from "./pages/Recommendations";
import { Compliance } from "./pages/Compliance";
import { IDSPage } from "./pages/IDS";

// Session is who is logged in; canEdit follows the role (operators and
// admins change policy, auditors only read).
export interface Session extends WhoAmI {
  canEdit: boolean;
}

interface NavItem {
  path: string;
  label: string;
}

const nav: NavItem[] = [
  { path: "/map", label: "Map" },
  { path: "/recommendations", label: "Recommendations" },
  { path: "/policy", label: "Policy" },
  { path: "/inventory", label: "Inventory" },
  { path: "/hosts", label: "Hosts" },
  { path: "/history", label: "History & audit" },
  { path: "/compliance", label: "Compliance" },
  { path: "/ids", label: "IDS/IPS" },
];

export function App() {
  const [path, go] = useRoute();
  const [session, setSession] = useState<Session | null>(null);
  const [checking, setChecking] = useState(!!token());

  const logout = () => {
    setToken(null);
    setSession(null);
    go("/login");
  };

  useEffect(() => {
    onUnauthorized(logout);
    const t = token();
    if (!t) return;
    call<WhoAmI>("GET", "/whoami", undefined, t)
      .then((w) => setSession({ ...w, canEdit: w.role === "admin" || w.role === "operator" }))
      .catch(() => setToken(null))
      .finally(() => setChecking(false));
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);

  if (checking) return <p className="center muted">Checking your session…</p>;
  if (!session) {
    return (
      <Login
        onLogin={(secret, who) => {
          setToken(secret);
          setSession({ ...who, canEdit: who.role === "admin" || who.role === "operator" });
          if (path === "/" || path === "/login") go("/policy");
        }}
      />
    );
  }
  const current = path === "/" || path === "/login" ? "/policy" : path;
  const item = nav.find((n) => current === n.path || current.startsWith(n.path + "/"));

  let page;
  if (!item) page = <p className="error">No page at {path}.</p>;
  else if (item.path === "/map") page = <MapPage />;
  else if (item.path === "/recommendations") page = <Recommendations session={session} />;
  else if (item.path === "/compliance") page = <Compliance />;
  else if (item.path === "/policy") page = <PolicyPage session={session} />;
  else if (item.path === "/inventory") page = <Inventory session={session} path={current} go={go} />;
  else if (item.path === "/hosts") page = <Hosts />;
  else if (item.path === "/ids") page = <IDSPage path={current} go={go} />;
  else page = <History session={session} />;

  return (
    <div className="shell">
      <nav className="nav" aria-label="Main">
        <div className="brand">Bulkhead</div>
        <ul>
          {nav.map((n) => (
            <li key={n.path}>
              <a
                href={n.path}
                className={n === item ? "active" : ""}
                aria-current={n === item ? "page" : undefined}
                onClick={(e) => {
                  e.preventDefault();
                  go(n.path);
                }}
              >
                {n.label}
              </a>
            </li>
          ))}
        </ul>
        <div className="who">
          <div>
            <span className="muted">Signed in as</span> <strong data-testid="whoami">{session.name}</strong>
          </div>
          <div>
            <span className={`role role-${session.role}`} data-testid="role">
              {session.role}
            </span>
            {!session.canEdit && <span className="muted"> read-only</span>}
          </div>
          <button className="link" onClick={logout}>
            Log out
          </button>
        </div>
      </nav>
      <main>{page}</main>
    </div>
  );
}
