import { useState } from "preact/hooks";
import { patch, post, put } from "../api";
import { limit, when } from "../format";
import { Meter, Page, Problem, useAction, useData } from "../ui";

interface User {
  id: string;
  name: string;
  role: string;
  disabled: boolean;
  created_at: number;
}
export interface Limits {
  tokens_per_day?: number | null;
  tokens_per_month?: number | null;
  requests_per_minute?: number | null;
  tokens_per_minute?: number | null;
  max_concurrent_requests?: number | null;
  max_tokens_per_request?: number | null;
  allowed_models?: string[] | null;
  weight?: number | null;
}
const FIELDS: Array<[keyof Limits, string]> = [
  ["tokens_per_day", "Tokens per day"],
  ["tokens_per_month", "Tokens per month"],
  ["requests_per_minute", "Requests per minute"],
  ["tokens_per_minute", "Tokens per minute"],
  ["max_concurrent_requests", "Concurrent requests"],
  ["max_tokens_per_request", "Max tokens per request"],
  ["weight", "Scheduling weight"],
];

function QuotaEditor(props: { user: string; onDone: () => void }) {
  const { data, error } = useData<{ own: Limits; effective: Limits }>(`/admin/users/${encodeURIComponent(props.user)}/quota`);
  const usage = useData<{ today: { total_tokens: number; requests: number }; month: { total_tokens: number; requests: number } }>(
    `/admin/users/${encodeURIComponent(props.user)}/usage`,
    5000,
  );
  const [draft, setDraft] = useState<Record<string, string>>({});
  const [run, problem, busy] = useAction();
  if (error) return <Problem error={error} />;
  if (!data) return <p>Loading…</p>;
  const value = (k: keyof Limits) => draft[k] ?? (k === "allowed_models" ? (data.own.allowed_models ?? []).join(", ") : data.own[k]?.toString() ?? "");
  return (
    <form
      class="card quota"
      aria-label={`quota of ${props.user}`}
      onSubmit={(e) => {
        e.preventDefault();
        const body: Limits = {};
        for (const [k] of FIELDS) {
          const v = value(k).trim();
          (body as Record<string, unknown>)[k] = v === "" ? null : Number(v);
        }
        const models = value("allowed_models").trim();
        body.allowed_models = models ? models.split(/[\s,]+/).filter(Boolean) : null;
        run(() => put(`/admin/users/${encodeURIComponent(props.user)}/quota`, body)).then((ok) => ok && props.onDone());
      }}
    >
      <h2>Quota of {props.user}</h2>
      {usage.data && (
        <div data-testid="user-usage">
          <Meter label="Tokens today" used={usage.data.today.total_tokens} limit={data.effective.tokens_per_day} />
          <Meter label="Tokens this month" used={usage.data.month.total_tokens} limit={data.effective.tokens_per_month} />
        </div>
      )}
      <p class="hint">Empty = the role's default (shown as “in effect”).</p>
      <div class="grid">
        {FIELDS.map(([k, label]) => (
          <label key={k}>
            {label}
            <input name={k} inputMode="numeric" pattern="[0-9]*" value={value(k)} onInput={(e) => setDraft({ ...draft, [k]: e.currentTarget.value })} />
            <small>in effect: {limit(data.effective[k] as number | null)}</small>
          </label>
        ))}
        <label>
          Allowed models (comma-separated)
          <input name="allowed_models" value={value("allowed_models")} onInput={(e) => setDraft({ ...draft, allowed_models: e.currentTarget.value })} />
          <small>in effect: {data.effective.allowed_models?.join(", ") ?? "all"}</small>
        </label>
      </div>
      <Problem error={problem} />
      <div class="row">
        <button type="submit" disabled={busy}>
          Save quota
        </button>
        <button type="button" class="secondary" onClick={props.onDone}>
          Close
        </button>
      </div>
    </form>
  );
}

export function UsersPage(props: { me: string }) {
  const { data, error, reload } = useData<User[]>("/admin/users");
  const usage = useData<{ groups: Array<{ group: string; total_tokens: number; requests: number }> }>("/admin/usage?group_by=user");
  const [name, setName] = useState("");
  const [role, setRole] = useState("member");
  const [password, setPassword] = useState("");
  const [editing, setEditing] = useState<string>();
  const [run, problem, busy] = useAction();
  const monthTokens = (u: string) => usage.data?.groups.find((g) => g.group === u)?.total_tokens ?? 0;
  return (
    <Page title="Users">
      <form
        class="card inline"
        aria-label="new user"
        onSubmit={(e) => {
          e.preventDefault();
          run(() => post("/admin/users", { name, role, password: password || undefined })).then((ok) => {
            if (ok) {
              setName("");
              setPassword("");
              reload();
            }
          });
        }}
      >
        <label>
          Name
          <input name="name" required value={name} onInput={(e) => setName(e.currentTarget.value)} />
        </label>
        <label>
          Role
          <select name="role" value={role} onChange={(e) => setRole(e.currentTarget.value)}>
            <option value="member">member</option>
            <option value="admin">admin</option>
          </select>
        </label>
        <label>
          Password (for the dashboard; optional)
          <input name="password" type="password" autocomplete="new-password" value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
        </label>
        <button type="submit" disabled={busy}>
          Create user
        </button>
      </form>
      <Problem error={problem || error} />
      {editing && <QuotaEditor user={editing} onDone={() => setEditing(undefined)} />}
      <table>
        <thead>
          <tr>
            <th>name</th>
            <th>role</th>
            <th>status</th>
            <th class="n">tokens this month</th>
            <th>created</th>
            <th>actions</th>
          </tr>
        </thead>
        <tbody>
          {data?.map((u) => (
            <tr key={u.id} data-user={u.name}>
              <td>{u.name}</td>
              <td>
                <select
                  aria-label={`role of ${u.name}`}
                  value={u.role}
                  disabled={u.name === props.me}
                  onChange={(e) => run(() => patch(`/admin/users/${encodeURIComponent(u.name)}`, { role: e.currentTarget.value })).then(reload)}
                >
                  <option value="member">member</option>
                  <option value="admin">admin</option>
                </select>
              </td>
              <td>{u.disabled ? "disabled" : "active"}</td>
              <td class="n">{monthTokens(u.name).toLocaleString()}</td>
              <td>{when(u.created_at)}</td>
              <td class="row">
                <button type="button" class="secondary" onClick={() => setEditing(u.name)}>
                  Quota
                </button>
                {u.name !== props.me && (
                  <button type="button" class="secondary" onClick={() => run(() => patch(`/admin/users/${encodeURIComponent(u.name)}`, { disabled: !u.disabled })).then(reload)}>
                    {u.disabled ? "Enable" : "Disable"}
                  </button>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </Page>
  );
}
