import { bytes } from "../format";
import { Page, Problem, useData } from "../ui";

interface Report {
  inventory: {
    cpu: { brand: string; arch: string; physical_cores: number | null; logical_cores: number; simd: string[]; kernels: string; ternary_kernels: string; memory_total_bytes: number; memory_available_bytes: number };
    gpus: Array<{ id: string; name: string; uuid: string; memory_total_bytes: number; memory_free_bytes: number; power_limit_watts: number | null; compute_capability: string | null }>;
    gpu_note: string | null;
    metal: {
      name: string;
      architecture: string | null;
      unified_memory: boolean;
      working_set_bytes: number;
      allocated_bytes: number;
      max_buffer_bytes: number;
      families: string[];
    } | null;
    metal_note: string | null;
  };
  backends_built: string[];
  models: Array<{ model: string; device: string | null; backend: string | null; reason: string }>;
  power_zones: Array<{ name: string; path: string; readable: boolean }>;
  checks: Array<{ name: string; ok: boolean; detail: string }>;
}

export function DevicesPage() {
  const { data, error } = useData<Report>("/admin/devices");
  const cpu = data?.inventory.cpu;
  return (
    <Page title="Devices">
      <Problem error={error} />
      {data && cpu && (
        <>
          <div class="card">
            <h2>CPU</h2>
            <dl>
              <dt>model</dt>
              <dd>{cpu.brand} ({cpu.arch})</dd>
              <dt>cores</dt>
              <dd>
                {cpu.physical_cores ?? "?"} physical, {cpu.logical_cores} logical
              </dd>
              <dt>SIMD</dt>
              <dd>{cpu.simd.join(", ") || "none"}</dd>
              <dt>kernels in use</dt>
              <dd>
                {cpu.kernels} (ternary: {cpu.ternary_kernels})
              </dd>
              <dt>memory</dt>
              <dd>
                {bytes(cpu.memory_available_bytes)} available of {bytes(cpu.memory_total_bytes)}
              </dd>
            </dl>
          </div>
          <div class="card">
            <h2>GPUs</h2>
            {data.inventory.gpus.length ? (
              data.inventory.gpus.map((g) => (
                <dl key={g.id}>
                  <dt>{g.id}</dt>
                  <dd>
                    {g.name} — {bytes(g.memory_free_bytes)} free of {bytes(g.memory_total_bytes)}
                    {g.power_limit_watts ? `, power limit ${g.power_limit_watts} W` : ""}
                    {g.compute_capability ? `, compute ${g.compute_capability}` : ""}
                  </dd>
                </dl>
              ))
            ) : (
              <p>None. {data.inventory.gpu_note}</p>
            )}
            {data.inventory.metal && (
              <dl>
                <dt>metal</dt>
                <dd>
                  {data.inventory.metal.name} ({[data.inventory.metal.architecture, ...data.inventory.metal.families].filter(Boolean).join(", ")}
                  {data.inventory.metal.unified_memory ? ", unified memory" : ""}) —{" "}
                  {bytes(Math.max(0, data.inventory.metal.working_set_bytes - data.inventory.metal.allocated_bytes))} free of a{" "}
                  {bytes(data.inventory.metal.working_set_bytes)} working set
                </dd>
              </dl>
            )}
            {data.inventory.metal_note && <p class="hint">Apple Metal: {data.inventory.metal_note}</p>}
            <p class="hint">Back ends in this build: {data.backends_built.join(", ")}</p>
          </div>
          <div class="card">
            <h2>Power sensors</h2>
            {data.power_zones.length ? (
              <ul>
                {data.power_zones.map((z) => (
                  <li key={z.name}>
                    {z.name}: {z.readable ? "readable" : "not readable"} <small>{z.path}</small>
                  </li>
                ))}
              </ul>
            ) : (
              <p>No RAPL zones found.</p>
            )}
          </div>
          <div class="card">
            <h2>Checks</h2>
            <ul class="checks">
              {data.checks.map((c) => (
                <li key={c.name} class={c.ok ? "ok" : "warn"}>
                  <strong>{c.ok ? "✓" : "!"} {c.name}</strong> — {c.detail}
                </li>
              ))}
            </ul>
          </div>
          <div class="card">
            <h2>Where each model runs</h2>
            <ul>
              {data.models.map((m) => (
                <li key={m.model}>
                  <strong>{m.model}</strong>: {m.device ?? "nowhere"} {m.backend && `(${m.backend})`} — {m.reason}
                </li>
              ))}
            </ul>
          </div>
        </>
      )}
    </Page>
  );
}
