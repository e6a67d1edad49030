import { useState } from "react";
import { errorText } from "../api";
import { ConfirmButton } from "../components/ConfirmButton";
import { CopyButton } from "../components/CopyButton";
import { Notice, type NoticeState } from "../components/Notice";
import { useLoad } from "../components/useLoad";
import { when } from "../format";
import { useSession } from "../session";

const ROLES = ["viewer", "member", "admin", "owner"];

export default function Users() {
  const { api, tenant } = useSession();
  const [notice, setNotice] = useState<NoticeState>(null);
  const [generated, setGenerated] = useState<{ email: string; password: string } | null>(null);
  const [email, setEmail] = useState("");
  const [role, setRole] = useState("member");
  const { data, error, reload } = useLoad(() => api.auth.listUsers({ tenant }), [api, tenant]);
  return (
    <>
      <Notice notice={notice} />
      {generated && (
        <section className="secret" aria-label="New user's password">
          <p>
            Password of <strong>{generated.email}</strong> (shown once): <code>{generated.password}</code>{" "}
            <CopyButton text={generated.password} label="Copy password" />
          </p>
          <button type="button" onClick={() => setGenerated(null)}>
            Done
          </button>
        </section>
      )}
      {error && <p role="alert" className="notice error">{error}</p>}
      {data && (
        <table>
          <caption>Users of {tenant}</caption>
          <thead>
            <tr>
              <th scope="col">Email</th>
              <th scope="col">Role</th>
              <th scope="col">Created</th>
              <th scope="col">State</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {data.users.map((u) => (
              <tr key={u.id}>
                <td>{u.email}</td>
                <td>{u.role}</td>
                <td>{when(u.createdAtMs)}</td>
                <td>{u.disabledAtMs ? `disabled ${when(u.disabledAtMs)}` : "active"}</td>
                <td>
                  {!u.disabledAtMs && (
                    <ConfirmButton
                      label={`Disable ${u.email}`}
                      confirmLabel={`Really disable ${u.email}`}
                      onConfirm={async () => {
                        try {
                          await api.auth.disableUser({ tenant, user: u.id });
                          setNotice({ kind: "ok", text: `User ${u.email} disabled; their sessions ended.` });
                          await reload();
                        } catch (e) {
                          setNotice({ kind: "error", text: errorText(e) });
                        }
                      }}
                    />
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <form
        aria-label="Add a user"
        onSubmit={async (e) => {
          e.preventDefault();
          try {
            const r = await api.auth.createUser({ tenant, email, role, password: "" });
            setGenerated({ email: r.user?.email ?? email, password: r.generatedPassword });
            setNotice({ kind: "ok", text: `User ${r.user?.email} added as ${role}.` });
            setEmail("");
            await reload();
          } catch (err) {
            setNotice({ kind: "error", text: errorText(err) });
          }
        }}
      >
        <h2>Add a user</h2>
        <label>
          Email
          <input type="email" required value={email} onChange={(e) => setEmail(e.target.value)} />
        </label>
        <label>
          Role
          <select aria-label="Role" value={role} onChange={(e) => setRole(e.target.value)}>
            {ROLES.map((r) => (
              <option key={r}>{r}</option>
            ))}
          </select>
        </label>
        <button type="submit">Add user</button>
        <p className="hint">A password is generated and shown once.</p>
      </form>
    </>
  );
}
