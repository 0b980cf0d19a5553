import { useCallback, useEffect, useState } from "react";
import type { Problem } from "../api/client";
import { credential, onSignOut, signIn, signOut } from "../api/session";
import { Link } from "../components/Link";
import { Analyze } from "../screens/Analyze";
import { Collections } from "../screens/Collections";
import { Documents } from "../screens/Documents";
import { Search } from "../screens/Search";
import { SignIn } from "../screens/SignIn";
import { Usage } from "../screens/Usage";
import { Audit } from "../screens/admin/Audit";
import { TenantDetail } from "../screens/admin/TenantDetail";
import { Tenants } from "../screens/admin/Tenants";
import { UsageReport } from "../screens/admin/UsageReport";
import { type Identity, whoAmI } from "./identity";
import { navigate, usePath } from "./router";

const TENANT_NAV = [
  ["/documents", "Documents"],
  ["/collections", "Collections"],
  ["/search", "Search"],
  ["/analyze", "Analyze"],
  ["/usage", "Usage"],
] as const;

const ADMIN_NAV = [
  ["/admin/tenants", "Tenants"],
  ["/admin/usage", "Usage report"],
  ["/admin/audit", "Audit log"],
] as const;

export function App() {
  const [who, setWho] = useState<Identity | null>(null);
  const [busy, setBusy] = useState(credential() !== null);
  const [problem, setProblem] = useState<Problem | null>(null);
  const [reason, setReason] = useState<string | null>(null);
  const path = usePath();

  const resolve = useCallback(async () => {
    setBusy(true);
    const result = await whoAmI();
    setBusy(false);
    if (result.ok) {
      setWho(result.who);
      setProblem(null);
      setReason(null);
    } else {
      // A 401 has already signed out (with its detail as the reason).
      if (result.problem.status !== 401) {
        setProblem(result.problem);
        signOut(null);
      }
    }
  }, []);

  useEffect(() => {
    const off = onSignOut((why) => {
      setWho(null);
      setReason(why);
    });
    if (credential()) {
      void resolve();
    }
    return off;
  }, [resolve]);

  if (!who) {
    return (
      <SignIn
        reason={reason}
        problem={problem}
        busy={busy}
        onSubmit={(token) => {
          setReason(null);
          setProblem(null);
          signIn(token);
          void resolve();
        }}
      />
    );
  }

  const nav = who.kind === "admin" ? ADMIN_NAV : TENANT_NAV;
  const home = nav[0][0];
  const screen = path === "/" ? home : path;
  return (
    <div className="shell">
      <header>
        <span className="brand">Analyzer console</span>
        <span className="who" data-testid="who">
          {who.kind === "admin"
            ? "Operator (admin token)"
            : `${who.me.name} · ${who.me.tier}`}
        </span>
        <button type="button" className="quiet" onClick={() => signOut(null)}>
          Sign out
        </button>
      </header>
      <nav aria-label="Screens">
        <ul>
          {nav.map(([to, label]) => (
            <li key={to}>
              <Link to={to} current={screen === to || screen.startsWith(`${to}/`)}>
                {label}
              </Link>
            </li>
          ))}
        </ul>
      </nav>
      <main>{who.kind === "admin" ? adminScreen(screen) : tenantScreen(screen)}</main>
    </div>
  );
}

function tenantScreen(path: string) {
  switch (path) {
    case "/documents":
      return <Documents />;
    case "/collections":
      return <Collections />;
    case "/search":
      return <Search />;
    case "/analyze":
      return <Analyze />;
    case "/usage":
      return <Usage />;
    default:
      return <NotFound home="/documents" />;
  }
}

function adminScreen(path: string) {
  if (path.startsWith("/admin/tenants/")) {
    return <TenantDetail id={decodeURIComponent(path.slice("/admin/tenants/".length))} />;
  }
  switch (path) {
    case "/admin/tenants":
      return <Tenants />;
    case "/admin/usage":
      return <UsageReport />;
    case "/admin/audit":
      return <Audit />;
    default:
      return <NotFound home="/admin/tenants" />;
  }
}

function NotFound({ home }: { home: string }) {
  return (
    <section>
      <h1>Not here</h1>
      <p>
        This screen does not exist for this credential.{" "}
        <button type="button" className="link" onClick={() => navigate(home)}>
          Go to the first screen
        </button>
      </p>
    </section>
  );
}
