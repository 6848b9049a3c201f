import { useRef, useState } from "preact/hooks";
import { finishedRequest, streamChat } from "../api";
import { Page, Problem, useData } from "../ui";

interface Turn {
  role: "user" | "assistant";
  content: string;
  stats?: string;
}

export function PlaygroundPage() {
  const models = useData<{ data: Array<{ id: string }> }>("/v1/models");
  const [model, setModel] = useState<string>();
  const [turns, setTurns] = useState<Turn[]>([]);
  const [input, setInput] = useState("");
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  const [temperature, setTemperature] = useState("0.7");
  const [maxTokens, setMaxTokens] = useState("256");
  const abort = useRef<AbortController>();
  const chosen = model ?? models.data?.data[0]?.id;

  async function send() {
    if (!chosen || !input.trim()) return;
    const history: Turn[] = [...turns, { role: "user", content: input }];
    setTurns([...history, { role: "assistant", content: "" }]);
    setInput("");
    setError(undefined);
    setBusy(true);
    abort.current = new AbortController();
    let text = "";
    try {
      const r = await streamChat(
        chosen,
        history.map(({ role, content }) => ({ role, content })),
        (d) => {
          text += d;
          setTurns([...history, { role: "assistant", content: text }]);
        },
        { temperature: Number(temperature), max_tokens: Number(maxTokens) || undefined },
        abort.current.signal,
      );
      const n = r.usage?.completion_tokens ?? 0;
      const gen = r.seconds - (r.firstTokenSeconds ?? 0);
      let stats = `${n} tokens in ${r.seconds.toFixed(2)} s`;
      if (n > 1 && gen > 0) stats += ` · ${((n - 1) / gen).toFixed(1)} tokens/s`;
      if (r.firstTokenSeconds !== undefined) stats += ` · first token ${(r.firstTokenSeconds * 1000).toFixed(0)} ms`;
      // Energy is attributed when the request ends: the ledger row says how much and what measured it.
      const row = r.requestId ? await finishedRequest(r.requestId) : null;
      if (row?.device) stats += ` · on ${row.device}`;
      if (row?.energy_joules != null) {
        const tokens = row.prompt_tokens + row.completion_tokens;
        stats += ` · ${row.energy_joules.toFixed(2)} J, ${(row.energy_joules / Math.max(1, tokens)).toFixed(3)} J/token (${row.energy_source})`;
      } else if (row) {
        stats += " · no energy reading (no power sensor)";
      }
      setTurns([...history, { role: "assistant", content: text, stats }]);
    } catch (e) {
      if (!(e instanceof DOMException && e.name === "AbortError")) setError(e instanceof Error ? e.message : String(e));
      setTurns([...history, { role: "assistant", content: text, stats: "stopped" }]);
    } finally {
      setBusy(false);
    }
  }

  return (
    <Page
      title="Playground"
      actions={
        <button type="button" class="secondary" onClick={() => setTurns([])} disabled={busy}>
          New chat
        </button>
      }
    >
      <div class="row settings">
        <label class="inline-label">
          Model{" "}
          <select name="model" value={chosen} onChange={(e) => setModel(e.currentTarget.value)}>
            {models.data?.data.map((m) => (
              <option key={m.id} value={m.id}>
                {m.id}
              </option>
            ))}
          </select>
        </label>
        <label class="inline-label">
          Temperature
          <input name="temperature" type="number" min="0" max="2" step="0.1" value={temperature} onInput={(e) => setTemperature(e.currentTarget.value)} />
        </label>
        <label class="inline-label">
          Max tokens
          <input name="max_tokens" type="number" min="1" step="1" value={maxTokens} onInput={(e) => setMaxTokens(e.currentTarget.value)} />
        </label>
      </div>
      <Problem error={error || models.error} />
      <ol class="chat" aria-live="polite">
        {turns.map((t, i) => (
          <li key={i} class={t.role}>
            <div class="who">{t.role === "user" ? "You" : chosen}</div>
            <div class="text">{t.content || (busy && i === turns.length - 1 ? "…" : "")}</div>
            {t.stats && <div class="stats-line">{t.stats}</div>}
          </li>
        ))}
      </ol>
      <form
        class="composer"
        onSubmit={(e) => {
          e.preventDefault();
          send();
        }}
      >
        <textarea
          name="prompt"
          aria-label="message"
          rows={3}
          value={input}
          placeholder="Ask something… (Enter sends, Shift+Enter for a new line)"
          onInput={(e) => setInput(e.currentTarget.value)}
          onKeyDown={(e) => {
            if (e.key === "Enter" && !e.shiftKey) {
              e.preventDefault();
              send();
            }
          }}
        />
        {busy ? (
          <button type="button" class="danger" onClick={() => abort.current?.abort()}>
            Stop
          </button>
        ) : (
          <button type="submit" disabled={!chosen}>
            Send
          </button>
        )}
      </form>
    </Page>
  );
}
