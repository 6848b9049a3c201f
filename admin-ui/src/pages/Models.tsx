import { useEffect, useState } from "preact/hooks";
import { post } from "../api";
import { bytes, num, when } from "../format";
import { Page, Problem, useAction, useData } from "../ui";

interface Model {
  name: string;
  architecture: string;
  file_type: string | null;
  size_bytes: number;
  parameters: number;
  state: string;
  device: string | null;
  backend: string | null;
  placement: string;
  expires_at: number | null;
  preload: boolean;
  running: number;
  waiting: number;
  energy: Array<{ source: string; joules_per_token: number }>;
  speculation: { mode: string; draft?: string | null; acceptance_rate?: number | null } | null;
}

interface Pull {
  name: string;
  url: string;
  state: string;
  bytes: number;
  total: number | null;
  error: string | null;
}

function PullForm(props: { onDone: () => void }) {
  const pulls = useData<Pull[]>("/admin/models/pulls", 1000);
  const [url, setUrl] = useState("");
  const [name, setName] = useState("");
  const [run, problem, busy] = useAction();
  // A finished pull is a new model: refresh the table once per finish.
  const finished = pulls.data?.filter((p) => p.state === "done").length ?? 0;
  useEffect(() => {
    if (finished) props.onDone();
  }, [finished]);
  return (
    <form
      class="card"
      aria-label="pull model"
      onSubmit={(e) => {
        e.preventDefault();
        run(() => post("/admin/models/pull", { url, name })).then((ok) => {
          if (ok) {
            setUrl("");
            setName("");
            pulls.reload();
          }
        });
      }}
    >
      <div class="row">
        <label>
          Pull a GGUF file from a URL
          <input name="url" required type="url" value={url} placeholder="https://mirror.lan/models/model.gguf" onInput={(e) => setUrl(e.currentTarget.value)} />
        </label>
        <label>
          Name
          <input name="pull-name" required value={name} onInput={(e) => setName(e.currentTarget.value)} />
        </label>
        <button type="submit" disabled={busy}>
          Pull
        </button>
      </div>
      <Problem error={problem} />
      {pulls.data?.map((p) => (
        <div key={p.name} class="pull" data-pull={p.name}>
          <div>
            <strong>{p.name}</strong> <span class={`badge ${p.state}`}>{p.state}</span>{" "}
            <small>
              {bytes(p.bytes)}
              {p.total ? ` of ${bytes(p.total)}` : ""}
            </small>
          </div>
          <div class="meter-bar" role="progressbar" aria-label={`pull of ${p.name}`} aria-valuemin={0} aria-valuemax={p.total ?? undefined} aria-valuenow={p.bytes}>
            <div class={p.state === "failed" ? "meter-fill hot" : "meter-fill"} style={{ width: `${p.total ? (100 * p.bytes) / p.total : p.state === "done" ? 100 : 0}%` }} />
          </div>
          {p.error && <p class="problem">{p.error}</p>}
        </div>
      ))}
    </form>
  );
}

export function ModelsPage() {
  const { data, error, reload } = useData<Model[]>("/admin/models", 3000);
  const [run, problem, busy] = useAction();
  const [path, setPath] = useState("");
  const [name, setName] = useState("");
  return (
    <Page title="Models">
      <form
        class="card inline"
        aria-label="import model"
        onSubmit={(e) => {
          e.preventDefault();
          run(() => post("/admin/models/import", { path, name: name.trim() || undefined })).then((ok) => {
            if (ok) {
              setPath("");
              setName("");
              reload();
            }
          });
        }}
      >
        <label>
          GGUF file on the server
          <input name="path" required value={path} placeholder="/srv/models/model.gguf" onInput={(e) => setPath(e.currentTarget.value)} />
        </label>
        <label>
          Name (default: from the file)
          <input name="model-name" value={name} onInput={(e) => setName(e.currentTarget.value)} />
        </label>
        <button type="submit" disabled={busy}>
          {busy ? "Importing…" : "Import"}
        </button>
        <p class="hint">The file is checked as a runnable model, then hard-linked or copied into the models directory.</p>
      </form>
      <PullForm onDone={reload} />
      <Problem error={problem || error} />
      <table>
        <thead>
          <tr>
            <th>name</th>
            <th>architecture</th>
            <th>quant</th>
            <th class="n">size</th>
            <th class="n">parameters</th>
            <th>state</th>
            <th>placement</th>
            <th class="n">J/token</th>
            <th>speculation</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {data?.map((m) => (
            <tr key={m.name} data-model={m.name}>
              <td>{m.name}</td>
              <td>{m.architecture}</td>
              <td>{m.file_type ?? "–"}</td>
              <td class="n">{bytes(m.size_bytes)}</td>
              <td class="n">{num(m.parameters / 1e6, 0)} M</td>
              <td>
                <span class={`badge ${m.state}`}>{m.state}</span>
                {m.state === "loaded" && m.expires_at ? <small> until {when(m.expires_at)}</small> : null}
                {m.running + m.waiting > 0 && (
                  <small>
                    {" "}
                    {m.running} running, {m.waiting} waiting
                  </small>
                )}
              </td>
              <td>
                <strong>{m.device ?? "–"}</strong> {m.backend && <small>({m.backend})</small>}
                <div class="hint">{m.placement}</div>
              </td>
              <td class="n">{m.energy.length ? m.energy.map((e) => `${e.joules_per_token.toFixed(3)} ${e.source}`).join(", ") : "–"}</td>
              <td>{m.speculation ? `${m.speculation.mode}${m.speculation.draft ? ` (${m.speculation.draft})` : ""}` : "off"}</td>
              <td class="row">
                {m.state === "loaded" ? (
                  <button type="button" class="secondary" disabled={busy} onClick={() => run(() => post(`/admin/models/${encodeURIComponent(m.name)}/unload`)).then(reload)}>
                    Unload
                  </button>
                ) : (
                  <button type="button" class="secondary" disabled={busy || m.state === "loading"} onClick={() => run(() => post(`/admin/models/${encodeURIComponent(m.name)}/load`)).then(reload)}>
                    {m.state === "loading" ? "Loading…" : "Load"}
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
