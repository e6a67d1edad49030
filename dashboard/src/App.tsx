import { lazy, Suspense, useCallback, useEffect, useMemo, useState, type ReactNode } from "react";
import { errorText, isUnauthenticated, makeApi } from "./api";
import type { Principal } from "./gen/tollgate/admin/v1/auth_pb";
import { SessionContext, TOKEN_KEY, can, type Session } from "./session";
import { SignIn } from "./pages/SignIn";

// Each page is its own chunk: the sign-in screen loads only what it needs.
const Overview = lazy(() => import("./pages/Overview"));
const Providers = lazy(() => import("./pages/Providers"));
const Models = lazy(() => import("./pages/Models"));
const Keys = lazy(() => import("./pages/Keys"));
const Usage = lazy(() => import("./pages/Usage"));
const DataPlanes = lazy(() => import("./pages/DataPlanes"));
const Users = lazy(() => import("./pages/Users"));
const Tenants = lazy(() => import("./pages/Tenants"));
const Billing = lazy(() => import("./pages/Billing"));
const Codes = lazy(() => import("./pages/Codes"));
const Budgets = lazy(() => import("./pages/Budgets"));
const Guardrails = lazy(() => import("./pages/Guardrails"));
const Cache = lazy(() => import("./pages/Cache"));
const Prices = lazy(() => import("./pages/Prices"));
const RateLimits = lazy(() => import("./pages/RateLimits"));
const Incidents = lazy(() => import("./pages/Incidents"));

type Page = {
  path: string;
  title: string;
  element: ReactNode;
  show: (s: Session) => boolean;
  /** Installation-wide: shown without a selected tenant. */
  operatorOnly?: boolean;
};

const PAGES: Page[] = [
  { path: "/", title: "Overview", element: <Overview />, show: () => true },
  { path: "/providers", title: "Providers", element: <Providers />, show: () => true },
  { path: "/models", title: "Models & routes", element: <Models />, show: () => true },
  { path: "/keys", title: "Caller keys", element: <Keys />, show: () => true },
  { path: "/usage", title: "Usage", element: <Usage />, show: () => true },
  { path: "/billing", title: "Balance & ledger", element: <Billing />, show: () => true },
  { path: "/prices", title: "Prices", element: <Prices />, show: () => true },
  { path: "/budgets", title: "Budgets", element: <Budgets />, show: () => true },
  { path: "/guardrails", title: "Guardrails", element: <Guardrails />, show: () => true },
  { path: "/cache", title: "Cache", element: <Cache />, show: () => true },
  { path: "/limits", title: "Rate limits", element: <RateLimits />, show: () => true },
  { path: "/codes", title: "Redemption codes", element: <Codes />, show: (s) => s.isOperator && can(s.role, "write"), operatorOnly: true },
  // Groups and registration tokens (dp_groups.proto) for everyone (tenant users: their tenant's groups); nodes for operators.
  { path: "/data-planes", title: "Data planes", element: <DataPlanes />, show: () => true, operatorOnly: true },
  { path: "/incidents", title: "Incidents", element: <Incidents />, show: (s) => s.isOperator && can(s.role, "write"), operatorOnly: true },
  { path: "/users", title: "Users", element: <Users />, show: (s) => can(s.role, "users") },
  { path: "/tenants", title: "Tenants", element: <Tenants />, show: (s) => s.isOperator, operatorOnly: true },
];

function usePath(): [string, (to: string) => void] {
  const [path, setPath] = useState(window.location.pathname);
  useEffect(() => {
    const onPop = () => setPath(window.location.pathname);
    window.addEventListener("popstate", onPop);
    return () => window.removeEventListener("popstate", onPop);
  }, []);
  const navigate = useCallback((to: string) => {
    window.history.pushState(null, "", to);
    setPath(to);
    // Keyboard and screen-reader users land on the new page's content.
    requestAnimationFrame(() => document.getElementById("main")?.focus());
  }, []);
  return [path, navigate];
}

export function App() {
  const [token, setToken] = useState<string | null>(() => sessionStorage.getItem(TOKEN_KEY));
  const [principal, setPrincipal] = useState<Principal | null>(null);
  const [startError, setStartError] = useState<string | null>(null);
  const [tenants, setTenants] = useState<string[]>([]);
  const [tenant, setTenant] = useState("");
  const [path, navigate] = usePath();
  const [menuOpen, setMenuOpen] = useState(false);
  const api = useMemo(() => makeApi(token), [token]);

  const signOut = useCallback(async (reason?: string) => {
    if (token) {
      try {
        await makeApi(token).auth.signOut({});
      } catch {
        // The session may already be gone; signing out locally is enough.
      }
    }
    sessionStorage.removeItem(TOKEN_KEY);
    setToken(null);
    setPrincipal(null);
    setStartError(reason ?? null);
  }, [token]);

  useEffect(() => {
    if (!token) return;
    let stop = false;
    (async () => {
      try {
        const p = await api.auth.whoAmI({});
        const list = (await api.tenants.listTenants({})).tenants.map((t) => t.name);
        if (stop) return;
        setPrincipal(p);
        setTenants(list);
        setTenant(p.tenantName || list[0] || "");
      } catch (e) {
        if (stop) return;
        if (isUnauthenticated(e)) {
          sessionStorage.removeItem(TOKEN_KEY);
          setToken(null);
        }
        setStartError(errorText(e));
      }
    })();
    return () => {
      stop = true;
    };
  }, [api, token]);

  if (!token || !principal) {
    return (
      <SignIn
        error={startError}
        onSignedIn={(t) => {
          sessionStorage.setItem(TOKEN_KEY, t);
          setStartError(null);
          setToken(t);
        }}
      />
    );
  }

  const session: Session = {
    api,
    principal,
    tenant,
    role: principal.role,
    isOperator: principal.tenantId === "",
    reloadTenants: async (select) => {
      const list = (await api.tenants.listTenants({})).tenants.map((t) => t.name);
      setTenants(list);
      if (select) setTenant(select);
    },
  };
  const pages = PAGES.filter((p) => p.show(session));
  const page = pages.find((p) => p.path === path) ?? null;
  const who = principal.kind === "operator" ? "operator token" : `${principal.email} (${principal.role})`;

  return (
    <SessionContext.Provider value={session}>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header>
        <button type="button" className="menu" aria-expanded={menuOpen} aria-controls="nav" onClick={() => setMenuOpen(!menuOpen)}>
          Menu
        </button>
        <strong className="brand">Tollgate</strong>
        {session.isOperator ? (
          <label>
            Tenant{" "}
            <select aria-label="Tenant" value={tenant} onChange={(e) => setTenant(e.target.value)}>
              {tenants.map((t) => (
                <option key={t}>{t}</option>
              ))}
            </select>
          </label>
        ) : (
          <span>
            Tenant <strong>{principal.tenantName}</strong>
          </span>
        )}
        <span className="who">Signed in as {who}</span>
        <button type="button" onClick={() => void signOut()}>
          Sign out
        </button>
      </header>
      <nav id="nav" aria-label="Main" className={menuOpen ? "open" : undefined}>
        <ul>
          {pages.map((p) => (
            <li key={p.path}>
              <a
                href={p.path}
                aria-current={p.path === path ? "page" : undefined}
                onClick={(e) => {
                  e.preventDefault();
                  setMenuOpen(false);
                  navigate(p.path);
                }}
              >
                {p.title}
              </a>
            </li>
          ))}
          <li>
            {/* Served by the control plane itself (no sign-in), not a page of this app. */}
            <a href="/status" target="_blank" rel="noopener">
              Status page ↗
            </a>
          </li>
        </ul>
      </nav>
      <main id="main" tabIndex={-1}>
        {!tenant && page && !page.operatorOnly ? (
          <p>No tenant yet. Create one on the Tenants page or with `tollgate tenant create NAME`.</p>
        ) : page ? (
          <Suspense fallback={<p role="status">Loading…</p>}>
            <h1>{page.title}</h1>
            {page.element}
          </Suspense>
        ) : (
          <p>
            No such page. <a href="/" onClick={(e) => { e.preventDefault(); navigate("/"); }}>Go to the overview</a>.
          </p>
        )}
      </main>
    </SessionContext.Provider>
  );
}
