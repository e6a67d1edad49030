import { useState } from "react";
import { errorText, makeApi } from "../api";
import { Notice } from "../components/Notice";

/** Email + password (tenant and operator users), or the operator token. */
export function SignIn({ error, onSignedIn }: { error: string | null; onSignedIn: (token: string) => void }) {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [opToken, setOpToken] = useState("");
  const [busy, setBusy] = useState(false);
  const [failure, setFailure] = useState<string | null>(null);
  const shown = failure ?? error;

  return (
    <main id="main" className="signin">
      <h1>Sign in to Tollgate</h1>
      <Notice notice={shown ? { kind: "error", text: shown } : null} />
      <form
        aria-label="Sign in with email"
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          try {
            const r = await makeApi(null).auth.signIn({ email, password });
            setFailure(null);
            onSignedIn(r.token);
          } catch (err) {
            setFailure(errorText(err));
          } finally {
            setBusy(false);
          }
        }}
      >
        <label>
          Email
          <input type="email" autoComplete="username" required value={email} onChange={(e) => setEmail(e.target.value)} />
        </label>
        <label>
          Password
          <input
            type="password"
            autoComplete="current-password"
            required
            value={password}
            onChange={(e) => setPassword(e.target.value)}
          />
        </label>
        <button type="submit" disabled={busy}>
          Sign in
        </button>
      </form>
      <details>
        <summary>Operator token</summary>
        <form
          aria-label="Sign in with the operator token"
          onSubmit={async (e) => {
            e.preventDefault();
            setBusy(true);
            try {
              await makeApi(opToken.trim()).auth.whoAmI({});
              setFailure(null);
              onSignedIn(opToken.trim());
            } catch (err) {
              setFailure(errorText(err));
            } finally {
              setBusy(false);
            }
          }}
        >
          <label>
            Operator token (admin.token in the control plane's data directory)
            <input type="password" autoComplete="off" required value={opToken} onChange={(e) => setOpToken(e.target.value)} />
          </label>
          <button type="submit" disabled={busy}>
            Use token
          </button>
        </form>
      </details>
    </main>
  );
}
