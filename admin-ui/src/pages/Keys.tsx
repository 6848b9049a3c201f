import { useState } from "preact/hooks";
import { del, post } from "../api";
import { when } from "../format";
import { CopyButton, Page, Problem, useAction, useData } from "../ui";

interface Key {
  id: string;
  user_name: string;
  name: string;
  models: string[] | null;
  created_at: number;
  expires_at: number | null;
  revoked_at: number | null;
  last_used_at: number | null;
}

function Created(props: { secret: string; onClose: () => void }) {
  const base = `${location.origin}/v1`;
  const curl = `curl ${base}/chat/completions \\\n  -H "Authorization: Bearer ${props.secret}" \\\n  -H "Content-Type: application/json" \\\n  -d '{"model": "smollm2", "messages": [{"role": "user", "content": "Hello!"}]}'`;
  const env = `export OPENAI_BASE_URL=${base}\nexport OPENAI_API_KEY=${props.secret}`;
  return (
    <div class="card created" role="status">
      <h2>New key — shown once</h2>
      <p>Copy it now: Hearth keeps only a hash and cannot show it again.</p>
      <div class="row">
        <code class="secret" data-testid="new-key">
          {props.secret}
        </code>
        <CopyButton text={props.secret} />
      </div>
      <h3>curl</h3>
      <pre>{curl}</pre>
      <CopyButton text={curl} label="Copy curl" />
      <h3>OpenAI clients</h3>
      <pre>{env}</pre>
      <CopyButton text={env} label="Copy environment" />
      <div>
        <button type="button" class="secondary" onClick={props.onClose}>
          Done
        </button>
      </div>
    </div>
  );
}

/** Admins manage every key (`/admin/keys`); members their own (`/v1/me/keys`). */
export function KeysPage(props: { admin: boolean; me: string }) {
  const list = props.admin ? "/admin/keys" : "/v1/me/keys";
  const { data, error, reload } = useData<Key[]>(list);
  const [user, setUser] = useState(props.me);
  const [name, setName] = useState("");
  const [models, setModels] = useState("");
  const [expires, setExpires] = useState("");
  const [secret, setSecret] = useState<string>();
  const [run, problem, busy] = useAction();
  return (
    <Page title={props.admin ? "API keys" : "My API keys"}>
      <form
        class="card inline"
        aria-label="new key"
        onSubmit={(e) => {
          e.preventDefault();
          const body = {
            user: props.admin ? user : undefined,
            name,
            models: models.trim() ? models.split(/[\s,]+/).filter(Boolean) : undefined,
            expires: expires.trim() || undefined,
          };
          run(async () => {
            const k = await post<{ key: string }>(props.admin ? "/admin/keys" : "/v1/me/keys", body);
            setSecret(k.key);
            setName("");
            reload();
          });
        }}
      >
        {props.admin && (
          <label>
            User
            <input name="user" required value={user} onInput={(e) => setUser(e.currentTarget.value)} />
          </label>
        )}
        <label>
          Name
          <input name="key-name" value={name} placeholder="laptop" onInput={(e) => setName(e.currentTarget.value)} />
        </label>
        <label>
          Models (empty = all allowed)
          <input name="models" value={models} placeholder="smollm2, gemma" onInput={(e) => setModels(e.currentTarget.value)} />
        </label>
        <label>
          Expires in
          <input name="expires" value={expires} placeholder="30d (empty = never)" onInput={(e) => setExpires(e.currentTarget.value)} />
        </label>
        <button type="submit" disabled={busy}>
          Create key
        </button>
      </form>
      <Problem error={problem || error} />
      {secret && <Created secret={secret} onClose={() => setSecret(undefined)} />}
      <table>
        <thead>
          <tr>
            <th>id</th>
            {props.admin && <th>user</th>}
            <th>name</th>
            <th>models</th>
            <th>created</th>
            <th>expires</th>
            <th>last used</th>
            <th>state</th>
            <th />
          </tr>
        </thead>
        <tbody>
          {data?.map((k) => (
            <tr key={k.id} data-key={k.id} data-key-name={k.name}>
              <td>
                <code>{k.id}</code>
              </td>
              {props.admin && <td>{k.user_name}</td>}
              <td>{k.name || "–"}</td>
              <td>{k.models?.join(", ") ?? "all"}</td>
              <td>{when(k.created_at)}</td>
              <td>{k.expires_at ? when(k.expires_at) : "never"}</td>
              <td>{when(k.last_used_at)}</td>
              <td>{k.revoked_at ? "revoked" : k.expires_at && k.expires_at * 1000 < Date.now() ? "expired" : "active"}</td>
              <td>
                {!k.revoked_at && (
                  <button
                    type="button"
                    class="danger"
                    onClick={() => {
                      if (confirm(`Revoke key ${k.name || k.id}? Requests with it will be refused at once.`))
                        run(() => del(props.admin ? `/admin/keys/${k.id}` : `/v1/me/keys/${k.id}`)).then(reload);
                    }}
                  >
                    Revoke
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
