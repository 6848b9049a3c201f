import { useState } from "preact/hooks";
import { patch, post, put } from "../api";
import { when } from "../format";
import { Page, Problem, useAction, useData } from "../ui";

interface Batch {
  id: string;
  status: string;
  endpoint: string;
  created_at: number;
  completed_at: number | null;
  output_file_id: string | null;
  error_file_id: string | null;
  request_counts: { total: number; completed: number; failed: number };
  metadata: Record<string, string> | null;
}
interface Schedule {
  name: string;
  cron: string;
  owner: string;
  endpoint: string;
  enabled: boolean;
  last_run_at: number | null;
  last_batch_id: string | null;
}
interface Housekeeping {
  name: string;
  schedule: string;
  last_run: number | null;
  last_result: string | null;
  next_run: number | null;
}

function Progress(props: { done: number; total: number }) {
  return (
    <div class="meter-bar" role="progressbar" aria-valuemin={0} aria-valuemax={props.total} aria-valuenow={props.done} title={`${props.done} / ${props.total}`}>
      <div class="meter-fill" style={{ width: `${props.total ? (100 * props.done) / props.total : 0}%` }} />
    </div>
  );
}

export function JobsPage() {
  const batches = useData<{ data: Batch[] }>("/v1/batches?limit=50", 3000);
  const schedules = useData<{ window: string | null; schedules: Schedule[] }>("/admin/schedules");
  const jobs = useData<Housekeeping[]>("/admin/jobs");
  const [run, problem, busy] = useAction();
  const [window, setWindow] = useState<string>();
  const win = window ?? schedules.data?.window ?? "";
  return (
    <Page title="Jobs">
      <Problem error={problem || batches.error || schedules.error || jobs.error} />
      <h2>Batches</h2>
      <table>
        <thead>
          <tr>
            <th>id</th>
            <th>status</th>
            <th>progress</th>
            <th>created</th>
            <th>finished</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {batches.data?.data.map((b) => (
            <tr key={b.id}>
              <td>
                <code>{b.id}</code>
              </td>
              <td>
                <span class={`badge ${b.status}`}>{b.status}</span>
              </td>
              <td>
                <Progress done={b.request_counts.completed + b.request_counts.failed} total={b.request_counts.total} />
                <small>
                  {b.request_counts.completed} done, {b.request_counts.failed} failed of {b.request_counts.total}
                </small>
              </td>
              <td>{when(b.created_at)}</td>
              <td>{when(b.completed_at)}</td>
              <td class="row">
                {b.output_file_id && (
                  <a class="button secondary" href={`/v1/files/${b.output_file_id}/content`} download={`${b.id}-output.jsonl`}>
                    Output
                  </a>
                )}
                {b.error_file_id && (
                  <a class="button secondary" href={`/v1/files/${b.error_file_id}/content`} download={`${b.id}-errors.jsonl`}>
                    Errors
                  </a>
                )}
                {["validating", "in_progress", "queued"].includes(b.status) && (
                  <button type="button" class="danger" disabled={busy} onClick={() => run(() => post(`/v1/batches/${b.id}/cancel`)).then(batches.reload)}>
                    Cancel
                  </button>
                )}
              </td>
            </tr>
          ))}
          {!batches.data?.data.length && (
            <tr>
              <td colSpan={6}>No batches. Submit one with the OpenAI Batch API (POST /v1/files, then /v1/batches).</td>
            </tr>
          )}
        </tbody>
      </table>
      <h2>Batch window and recurring jobs</h2>
      <form
        class="card inline"
        aria-label="batch window"
        onSubmit={(e) => {
          e.preventDefault();
          run(() => put("/admin/schedules/window", { window: win.trim() || null })).then(schedules.reload);
        }}
      >
        <label>
          Batches run only between (local time)
          <input name="window" value={win} placeholder="01:00-06:00 (empty = any time)" onInput={(e) => setWindow(e.currentTarget.value)} />
        </label>
        <button type="submit" disabled={busy}>
          Save window
        </button>
      </form>
      <table>
        <thead>
          <tr>
            <th>name</th>
            <th>cron</th>
            <th>owner</th>
            <th>last run</th>
            <th>enabled</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {schedules.data?.schedules.map((s) => (
            <tr key={s.name}>
              <td>{s.name}</td>
              <td>
                <code>{s.cron}</code>
              </td>
              <td>{s.owner}</td>
              <td>
                {when(s.last_run_at)} {s.last_batch_id && <code>{s.last_batch_id}</code>}
              </td>
              <td>{s.enabled ? "yes" : "no"}</td>
              <td class="row">
                <button type="button" class="secondary" disabled={busy} onClick={() => run(() => post(`/admin/schedules/${encodeURIComponent(s.name)}/run`)).then(schedules.reload)}>
                  Run now
                </button>
                <button type="button" class="secondary" disabled={busy} onClick={() => run(() => patch(`/admin/schedules/${encodeURIComponent(s.name)}`, { enabled: !s.enabled })).then(schedules.reload)}>
                  {s.enabled ? "Disable" : "Enable"}
                </button>
              </td>
            </tr>
          ))}
          {!schedules.data?.schedules.length && (
            <tr>
              <td colSpan={6}>
                No recurring jobs. Add one with <code>hearth schedule add NAME --cron EXPR --user U --input FILE.jsonl</code>.
              </td>
            </tr>
          )}
        </tbody>
      </table>
      <h2>Maintenance</h2>
      <table>
        <thead>
          <tr>
            <th>job</th>
            <th>schedule</th>
            <th>last run</th>
            <th>result</th>
            <th>next run</th>
          </tr>
        </thead>
        <tbody>
          {jobs.data?.map((j) => (
            <tr key={j.name}>
              <td>{j.name}</td>
              <td>
                <code>{j.schedule}</code>
              </td>
              <td>{when(j.last_run)}</td>
              <td>{j.last_result ?? "–"}</td>
              <td>{when(j.next_run)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </Page>
  );
}
