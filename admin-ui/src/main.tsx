// The dashboard shell: who is signed in, the navigation their role allows, and hash routing (#/users), so the
// daemon's /admin, /api and /v1 paths stay the APIs'.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { ApiError, get, post, Session, setCsrf, whenSignedOut } from "./api";
import { DevicesPage } from "./pages/Devices";
import { JobsPage } from "./pages/Jobs";
import { KeysPage } from "./pages/Keys";
import { ChangePassword, Login } from "./pages/Login";
import { ModelsPage } from "./pages/Models";
import { NodesPage } from "./pages/Nodes";
import { OverviewPage } from "./pages/Overview";
import { PlaygroundPage } from "./pages/Playground";
import { MyUsagePage, UsagePage } from "./pages/Usage";
import { UsersPage } from "./pages/Users";
import "./style.css";

type Route = { path: string; label: string; admin: boolean; member: boolean };
const ROUTES: Route[] = [
  { path: "overview", label: "Overview", admin: true, member: false },
  { path: "users", label: "Users", admin: true, member: false },
  { path: "usage", label: "Usage", admin: true, member: true },
  { path: "keys", label: "API keys", admin: true, member: true },
  { path: "models", label: "Models", admin: true, member: false },
  { path: "devices", label: "Devices", admin: true, member: false },
  { path: "nodes", label: "Nodes", admin: true, member: false },
  { path: "jobs", label: "Jobs", admin: true, member: false },
  { path: "playground", label: "Playground", admin: true, member: true },
  { path: "password", label: "Password", admin: true, member: true },
];

function currentPath(): string {
  return location.hash.replace(/^#\/?/, "").split("?")[0] || "";
}

function App() {
  const [session, setSession] = useState<Session | null | undefined>(undefined);
  const [path, setPath] = useState(currentPath());

  const adopt = (s: Session | null) => {
    setCsrf(s?.csrf ?? "");
    setSession(s);
  };

  useEffect(() => {
    get<Session>("/auth/session")
      .then(adopt)
      .catch(() => adopt(null));
    whenSignedOut(() => adopt(null));
    const onHash = () => setPath(currentPath());
    window.addEventListener("hashchange", onHash);
    return () => window.removeEventListener("hashchange", onHash);
  }, []);

  if (session === undefined) return <p class="loading">Loading…</p>;
  if (session === null) return <Login onSession={adopt} />;
  if (session.must_change_password) return <ChangePassword session={session} onSession={adopt} forced />;

  const admin = session.role === "admin";
  const allowed = ROUTES.filter((r) => (admin ? r.admin : r.member));
  const route = ROUTES.find((r) => r.path === path);
  const home = admin ? "overview" : "usage";
  let page;
  if (!path) page = null;
  if (route && !allowed.includes(route)) {
    page = (
      <section class="page">
        <h1>Not available</h1>
        <p role="alert" class="problem">
          This page is for admins. You are signed in as {session.user} ({session.role}).
        </p>
      </section>
    );
  } else {
    switch (path || home) {
      case "overview":
        page = <OverviewPage />;
        break;
      case "users":
        page = <UsersPage me={session.user} />;
        break;
      case "keys":
        page = <KeysPage admin={admin} me={session.user} />;
        break;
      case "usage":
        page = admin ? <UsagePage /> : <MyUsagePage />;
        break;
      case "models":
        page = <ModelsPage />;
        break;
      case "devices":
        page = <DevicesPage />;
        break;
      case "nodes":
        page = <NodesPage />;
        break;
      case "jobs":
        page = <JobsPage />;
        break;
      case "playground":
        page = <PlaygroundPage />;
        break;
      case "password":
        page = <ChangePassword session={session} onSession={adopt} forced={false} />;
        break;
      default:
        page = (
          <section class="page">
            <h1>Not found</h1>
            <p>
              No page “{path}”. <a href={`#/${home}`}>Go home</a>.
            </p>
          </section>
        );
    }
  }
  const active = path || home;
  return (
    <div class="shell">
      <a class="skip" href="#main">
        Skip to content
      </a>
      <nav aria-label="main">
        <div class="brand">Hearth</div>
        <ul>
          {allowed.map((r) => (
            <li key={r.path}>
              <a href={`#/${r.path}`} aria-current={active === r.path ? "page" : undefined}>
                {r.path === "usage" && !admin ? "My usage" : r.label}
              </a>
            </li>
          ))}
        </ul>
        <div class="who">
          <span>
            {session.user} <small>({session.role})</small>
          </span>
          <button
            type="button"
            class="secondary"
            onClick={() =>
              post("/auth/logout")
                .catch((e: ApiError) => e)
                .finally(() => adopt(null))
            }
          >
            Sign out
          </button>
        </div>
      </nav>
      <main id="main">{page}</main>
    </div>
  );
}

render(<App />, document.getElementById("app")!);
