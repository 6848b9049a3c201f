import { useState } from "preact/hooks";
import { post, Session } from "../api";
import { Problem, useAction } from "../ui";

export function Login(props: { onSession: (s: Session) => void }) {
  const [user, setUser] = useState("");
  const [password, setPassword] = useState("");
  const [run, error, busy] = useAction();
  return (
    <main class="login">
      <form
        class="card"
        onSubmit={(e) => {
          e.preventDefault();
          run(async () => props.onSession(await post<Session>("/auth/login", { user, password })));
        }}
      >
        <h1>Sign in to Hearth</h1>
        <label>
          User name
          <input name="user" autocomplete="username" required value={user} onInput={(e) => setUser(e.currentTarget.value)} />
        </label>
        <label>
          Password
          <input
            name="password"
            type="password"
            autocomplete="current-password"
            required
            value={password}
            onInput={(e) => setPassword(e.currentTarget.value)}
          />
        </label>
        <Problem error={error} />
        <button type="submit" disabled={busy}>
          Sign in
        </button>
        <p class="hint">
          First start: user <code>admin</code>, password in <code>/var/lib/hearth/initial-admin-password</code>.
        </p>
      </form>
    </main>
  );
}

export function ChangePassword(props: { session: Session; onSession: (s: Session) => void; forced: boolean }) {
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const [again, setAgain] = useState("");
  const [run, error, busy] = useAction();
  const [done, setDone] = useState(false);
  return (
    <main class={props.forced ? "login" : ""}>
      <form
        class="card"
        onSubmit={(e) => {
          e.preventDefault();
          run(async () => {
            if (next !== again) throw new Error("the two new passwords differ");
            props.onSession(await post<Session>("/auth/password", { current_password: current, new_password: next }));
            setDone(true);
            setCurrent("");
            setNext("");
            setAgain("");
          });
        }}
      >
        <h1>{props.forced ? "Choose a new password" : "Change password"}</h1>
        {props.forced && <p>This account still has the generated first-start password. Choose your own to continue.</p>}
        <label>
          Current password
          <input name="current" type="password" autocomplete="current-password" required value={current} onInput={(e) => setCurrent(e.currentTarget.value)} />
        </label>
        <label>
          New password (at least 8 characters)
          <input name="new" type="password" autocomplete="new-password" minLength={8} required value={next} onInput={(e) => setNext(e.currentTarget.value)} />
        </label>
        <label>
          New password again
          <input name="again" type="password" autocomplete="new-password" minLength={8} required value={again} onInput={(e) => setAgain(e.currentTarget.value)} />
        </label>
        <Problem error={error} />
        {done && <p class="ok">Password changed. Other sessions of this user were signed out.</p>}
        <button type="submit" disabled={busy}>
          Change password
        </button>
      </form>
    </main>
  );
}
