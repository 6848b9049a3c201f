import { bytes, when } from "../format";
import { Page, Problem, useData } from "../ui";

interface LoadedModel {
  name: string;
  running: number;
  waiting: number;
}
interface Node {
  name: string;
  url: string | null;
  host: string;
  version: string;
  state: "alive" | "expired";
  started_at: number;
  last_seen: number;
  seconds_since_seen: number;
  this: boolean;
  models: LoadedModel[] | null;
  installed: string[] | null;
  devices: Array<{ id: string; name: string; memory_total_bytes: number; memory_free_bytes: number }> | null;
}

/** The cluster's registry (GET /admin/nodes), refreshed every few seconds: one node on SQLite, every node sharing
 * a PostgreSQL database otherwise. */
export function NodesPage() {
  const { data, error } = useData<Node[]>("/admin/nodes", 5000);
  return (
    <Page title="Nodes">
      <Problem error={error} />
      {data && (
        <div class="card">
          <table aria-label="nodes">
            <thead>
              <tr>
                <th>node</th>
                <th>state</th>
                <th>last seen</th>
                <th>loaded models (running / waiting)</th>
                <th>imported models</th>
                <th>devices (free memory)</th>
                <th>version</th>
                <th>started</th>
              </tr>
            </thead>
            <tbody>
              {data.map((n) => (
                <tr key={n.name} data-node={n.name}>
                  <td>
                    <strong>{n.name}</strong>
                    {n.this && <span class="badge"> this node</span>}
                    <br />
                    <small>{n.url ?? "no advertised URL"}</small>
                  </td>
                  <td>
                    <span class={`badge ${n.state === "alive" ? "loaded" : "warn"}`}>{n.state}</span>
                  </td>
                  <td>{n.seconds_since_seen} s ago</td>
                  <td>
                    {n.models?.length
                      ? n.models.map((m) => (
                          <div key={m.name} data-loaded={m.name}>
                            {m.name} ({m.running} / {m.waiting})
                          </div>
                        ))
                      : "none"}
                  </td>
                  <td>{n.installed?.join(", ") || "none"}</td>
                  <td>
                    {(n.devices ?? []).map((d) => (
                      <div key={d.id} title={d.name}>
                        {d.id}: {bytes(d.memory_free_bytes)} of {bytes(d.memory_total_bytes)}
                      </div>
                    ))}
                  </td>
                  <td>{n.version}</td>
                  <td>{when(n.started_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <p class="hint">
            A node that has not recorded a heartbeat within <code>cluster.expire</code> shows as expired; with{" "}
            <code>cluster.secret</code> set, requests go to the node with the model loaded and the shortest queue.
          </p>
        </div>
      )}
    </Page>
  );
}
