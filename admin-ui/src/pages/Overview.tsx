import { TimeChart } from "../chart";
import { joules, num } from "../format";
import { Page, Problem, Stat, useData } from "../ui";

interface Columns {
  t: number[];
  tokens_per_s: number[];
  running: number[];
  waiting: number[];
  cpu_busy: number[];
  gpu_utilization: Record<string, Array<number | null>>;
  watts: Record<string, Array<number | null>>;
}
interface Overview {
  now: { tokens_per_s: number; running: number; waiting: number; cpu_busy: number; gpu_utilization: Record<string, number>; watts: Record<string, number> };
  history: Columns;
  today: {
    day: string;
    tokens: number;
    requests: number;
    joules: number;
    models: Array<{ model: string; requests: number; tokens: number; joules: number; energy: Array<{ source: string; joules_per_token: number }> }>;
  };
  keyless: { networks: string[]; user: string | null };
}

export function OverviewPage() {
  const { data, error } = useData<Overview>("/admin/overview", 2000);
  const h = data?.history;
  const watts = data ? Object.entries(data.now.watts) : [];
  return (
    <Page title="Overview">
      <Problem error={error} />
      {data && h && (
        <>
          <div class="stats">
            <Stat label="generated tokens/s" value={num(data.now.tokens_per_s, 1)} />
            <Stat label="requests running" value={num(data.now.running)} />
            <Stat label="requests waiting" value={num(data.now.waiting)} />
            <Stat label="CPU busy" value={`${num(data.now.cpu_busy * 100)} %`} />
            {Object.entries(data.now.gpu_utilization).map(([g, v]) => (
              <Stat key={g} label={`GPU ${g} busy`} value={`${num(v * 100)} %`} />
            ))}
            {watts.length ? (
              watts.map(([d, w]) => <Stat key={d} label={`${d} power`} value={`${num(w, 1)} W`} />)
            ) : (
              <Stat label="power" value="–" hint="no power sensor (see Devices)" />
            )}
            <Stat label={`energy today (${data.today.day})`} value={joules(data.today.joules)} hint={`${num(data.today.tokens)} tokens, ${num(data.today.requests)} requests`} />
            <Stat
              label="requests without a key"
              value={data.keyless.networks.length ? `as ${data.keyless.user}` : "refused"}
              hint={data.keyless.networks.length ? `from ${data.keyless.networks.join(", ")} ([keyless] in the config)` : "[keyless] in the config is off"}
            />
          </div>
          <div class="charts">
            <TimeChart title="Generated tokens/s — last hour" t={h.t} series={[{ label: "tokens/s", values: h.tokens_per_s }]} />
            <TimeChart
              title="Requests"
              t={h.t}
              series={[
                { label: "running", values: h.running },
                { label: "waiting", values: h.waiting },
              ]}
            />
            <TimeChart
              title="Utilisation"
              unit="%"
              t={h.t}
              series={[
                { label: "CPU", values: h.cpu_busy.map((v) => v * 100) },
                ...Object.entries(h.gpu_utilization).map(([g, v]) => ({ label: `GPU ${g}`, values: v.map((x) => (x === null ? null : x * 100)) })),
              ]}
            />
            {Object.keys(h.watts).length ? (
              <TimeChart title="Power" unit=" W" t={h.t} series={Object.entries(h.watts).map(([d, v]) => ({ label: d, values: v }))} />
            ) : (
              <div class="chart">
                <figcaption>Power</figcaption>
                <p class="hint">
                  No power readings: no readable RAPL counter, NVIDIA GPU or <code>power.cpu_watts_estimate</code>. The Devices page says which sensor is
                  missing and how to enable it.
                </p>
              </div>
            )}
          </div>
          <h2>Energy per token today</h2>
          <table>
            <thead>
              <tr>
                <th>model</th>
                <th class="n">requests</th>
                <th class="n">tokens</th>
                <th class="n">energy</th>
                <th class="n">J/token</th>
              </tr>
            </thead>
            <tbody>
              {data.today.models.map((m) => (
                <tr key={m.model}>
                  <td>{m.model}</td>
                  <td class="n">{num(m.requests)}</td>
                  <td class="n">{num(m.tokens)}</td>
                  <td class="n">{joules(m.joules)}</td>
                  <td class="n">{m.energy.length ? m.energy.map((e) => `${e.joules_per_token.toFixed(3)} (${e.source})`).join(", ") : "–"}</td>
                </tr>
              ))}
              {!data.today.models.length && (
                <tr>
                  <td colSpan={5}>No requests today yet.</td>
                </tr>
              )}
            </tbody>
          </table>
        </>
      )}
    </Page>
  );
}
