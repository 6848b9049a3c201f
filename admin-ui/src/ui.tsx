// Small shared pieces: loading data, showing errors, stat tiles, forms that report the API's answer.
import type { ComponentChildren } from "preact";
import { useCallback, useEffect, useState } from "preact/hooks";
import { ApiError, get } from "./api";

export function useData<T>(path: string | null, everyMs?: number): { data?: T; error?: string; reload: () => void } {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<string>();
  const [tick, setTick] = useState(0);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  useEffect(() => {
    if (!path) return;
    let live = true;
    const load = () =>
      get<T>(path)
        .then((d) => live && (setData(d), setError(undefined)))
        .catch((e) => live && setError(e instanceof Error ? e.message : String(e)));
    load();
    const timer = everyMs ? setInterval(load, everyMs) : undefined;
    return () => {
      live = false;
      if (timer) clearInterval(timer);
    };
  }, [path, tick, everyMs]);
  return { data, error, reload };
}

export function Page(props: { title: string; children: ComponentChildren; actions?: ComponentChildren }) {
  return (
    <section class="page" aria-labelledby="page-title">
      <header class="page-head">
        <h1 id="page-title">{props.title}</h1>
        <div class="actions">{props.actions}</div>
      </header>
      {props.children}
    </section>
  );
}

export function Problem(props: { error?: string }) {
  return props.error ? (
    <p class="problem" role="alert">
      {props.error}
    </p>
  ) : null;
}

export function Stat(props: { label: string; value: string; hint?: string }) {
  return (
    <div class="stat">
      <div class="stat-value">{props.value}</div>
      <div class="stat-label">{props.label}</div>
      {props.hint && <div class="stat-hint">{props.hint}</div>}
    </div>
  );
}

export function Meter(props: { used: number; limit?: number | null; label: string }) {
  const share = props.limit ? Math.min(1, props.used / props.limit) : 0;
  return (
    <div class="meter" aria-label={props.label}>
      <div class="meter-label">
        {props.label}: {props.used.toLocaleString()} / {props.limit ? props.limit.toLocaleString() : "unlimited"}
      </div>
      {props.limit ? (
        <div class="meter-bar" role="progressbar" aria-valuemin={0} aria-valuemax={props.limit} aria-valuenow={props.used}>
          <div class={share > 0.9 ? "meter-fill hot" : "meter-fill"} style={{ width: `${share * 100}%` }} />
        </div>
      ) : null}
    </div>
  );
}

/** Runs an API action, keeping its error to show; resolves true on success. */
export function useAction(): [(f: () => Promise<unknown>) => Promise<boolean>, string | undefined, boolean] {
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const run = useCallback(async (f: () => Promise<unknown>) => {
    setBusy(true);
    setError(undefined);
    try {
      await f();
      return true;
    } catch (e) {
      setError(e instanceof ApiError || e instanceof Error ? e.message : String(e));
      return false;
    } finally {
      setBusy(false);
    }
  }, []);
  return [run, error, busy];
}

export function CopyButton(props: { text: string; label?: string }) {
  const [done, setDone] = useState(false);
  return (
    <button
      type="button"
      class="secondary"
      onClick={async () => {
        try {
          await navigator.clipboard.writeText(props.text);
          setDone(true);
          setTimeout(() => setDone(false), 1500);
        } catch {
          /* clipboard refused (not a secure context): the text stays selectable */
        }
      }}
    >
      {done ? "Copied" : props.label ?? "Copy"}
    </button>
  );
}
