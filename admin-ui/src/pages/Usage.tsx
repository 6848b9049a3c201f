import { useState } from "preact/hooks";
import { BarChart } from "../chart";
import { joules, num, when } from "../format";
import { Meter, Page, Problem, Stat, useData } from "../ui";

interface Group {
  group: string;
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  cancelled: number;
  rejected: number;
  joules: number;
}

function monthStart(): string {
  const d = new Date();
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-01`;
}

export function UsagePage() {
  const [by, setBy] = useState("day");
  const [from, setFrom] = useState(monthStart());
  const [to, setTo] = useState("");
  const [user, setUser] = useState("");
  const q = new URLSearchParams({ group_by: by, from });
  if (to) q.set("to", to);
  if (user) q.set("user", user);
  const { data, error } = useData<{ from: string; to: string; groups: Group[] }>(`/admin/usage?${q}`, 10000);
  const exportQ = new URLSearchParams({ from });
  if (to) exportQ.set("to", to);
  if (user) exportQ.set("user", user);
  const groups = data?.groups ?? [];
  return (
    <Page
      title="Usage"
      actions={
        <a class="button secondary" href={`/admin/usage/export?${exportQ}`} download="hearth-usage.csv">
          Download CSV
        </a>
      }
    >
      <form class="card inline" aria-label="usage filter" onSubmit={(e) => e.preventDefault()}>
        <label>
          Group by
          <select name="group_by" value={by} onChange={(e) => setBy(e.currentTarget.value)}>
            <option value="day">day</option>
            <option value="user">user</option>
            <option value="model">model</option>
          </select>
        </label>
        <label>
          From
          <input name="from" type="date" value={from} onInput={(e) => setFrom(e.currentTarget.value)} />
        </label>
        <label>
          To
          <input name="to" type="date" value={to} onInput={(e) => setTo(e.currentTarget.value)} />
        </label>
        <label>
          User
          <input name="user" value={user} placeholder="everyone" onInput={(e) => setUser(e.currentTarget.value)} />
        </label>
      </form>
      <Problem error={error} />
      {groups.length > 0 && (
        <div class="charts">
          <BarChart
            title={`Tokens by ${by}`}
            labels={groups.map((g) => g.group)}
            series={[
              { label: "prompt", values: groups.map((g) => g.prompt_tokens) },
              { label: "completion", values: groups.map((g) => g.completion_tokens) },
            ]}
          />
          <BarChart title={`Energy (J) by ${by}`} labels={groups.map((g) => g.group)} series={[{ label: "joules", values: groups.map((g) => g.joules) }]} />
        </div>
      )}
      <table data-testid="usage-table">
        <thead>
          <tr>
            <th>{by}</th>
            <th class="n">requests</th>
            <th class="n">prompt tokens</th>
            <th class="n">completion tokens</th>
            <th class="n">total tokens</th>
            <th class="n">energy</th>
            <th class="n">cancelled</th>
            <th class="n">rejected</th>
          </tr>
        </thead>
        <tbody>
          {groups.map((g) => (
            <tr key={g.group} data-group={g.group}>
              <td>{g.group}</td>
              <td class="n">{num(g.requests)}</td>
              <td class="n">{num(g.prompt_tokens)}</td>
              <td class="n">{num(g.completion_tokens)}</td>
              <td class="n">{num(g.total_tokens)}</td>
              <td class="n">{joules(g.joules)}</td>
              <td class="n">{num(g.cancelled)}</td>
              <td class="n">{num(g.rejected)}</td>
            </tr>
          ))}
          {!groups.length && (
            <tr>
              <td colSpan={8}>No usage in this range.</td>
            </tr>
          )}
        </tbody>
      </table>
    </Page>
  );
}

interface Window {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  requests: number;
}
interface MyUsage {
  user: string;
  today: Window;
  month: Window;
  limits: Record<string, number | null | string[]>;
  resets: { day: number; month: number };
  energy: { today: Array<{ source: string; joules: number; joules_per_token: number }>; month: Array<{ source: string; joules: number }> };
}

export function MyUsagePage() {
  const { data, error } = useData<MyUsage>("/v1/me/usage", 5000);
  const lim = (k: string) => (data?.limits[k] as number | null | undefined) ?? null;
  return (
    <Page title="My usage">
      <Problem error={error} />
      {data && (
        <>
          <div class="stats">
            <Stat label="tokens today" value={num(data.today.total_tokens)} hint={`${num(data.today.requests)} requests`} />
            <Stat label="tokens this month" value={num(data.month.total_tokens)} hint={`${num(data.month.requests)} requests`} />
            <Stat label="energy today" value={data.energy.today.map((e) => joules(e.joules)).join(" + ") || "–"} />
            <Stat label="energy this month" value={data.energy.month.map((e) => joules(e.joules)).join(" + ") || "–"} />
          </div>
          <div class="card" data-testid="my-quota">
            <h2>Quota</h2>
            <Meter label="Tokens today" used={data.today.total_tokens} limit={lim("tokens_per_day")} />
            <Meter label="Tokens this month" used={data.month.total_tokens} limit={lim("tokens_per_month")} />
            <p class="hint">
              Requests per minute: {lim("requests_per_minute") ?? "unlimited"} · tokens per minute: {lim("tokens_per_minute") ?? "unlimited"} · concurrent:{" "}
              {lim("max_concurrent_requests") ?? "unlimited"} · max tokens per request: {lim("max_tokens_per_request") ?? "unlimited"} · models:{" "}
              {(data.limits.allowed_models as string[] | null)?.join(", ") ?? "all"}
            </p>
            <p class="hint">
              The day resets {when(data.resets.day)}, the month {when(data.resets.month)}.
            </p>
          </div>
        </>
      )}
    </Page>
  );
}
