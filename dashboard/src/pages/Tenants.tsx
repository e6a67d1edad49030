import { useState } from "react";
import { errorText } from "../api";
import { Notice, type NoticeState } from "../components/Notice";
import { useLoad } from "../components/useLoad";
import { when } from "../format";
import { useSession } from "../session";

/** Operators only: every tenant, and creating one. */
export default function Tenants() {
  const { api, reloadTenants } = useSession();
  const [notice, setNotice] = useState<NoticeState>(null);
  const [name, setName] = useState("");
  const { data, error, reload } = useLoad(() => api.tenants.listTenants({}), [api]);
  return (
    <>
      <Notice notice={notice} />
      {error && <p role="alert" className="notice error">{error}</p>}
      {data && (
        <table>
          <caption>Tenants</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Id</th>
              <th scope="col">State</th>
              <th scope="col">Created</th>
            </tr>
          </thead>
          <tbody>
            {data.tenants.length === 0 && (
              <tr>
                <td colSpan={4}>No tenants yet.</td>
              </tr>
            )}
            {data.tenants.map((t) => (
              <tr key={t.id}>
                <td>{t.name}</td>
                <td>
                  <code>{t.id}</code>
                </td>
                <td>{t.active ? "active" : "inactive"}</td>
                <td>{when(t.createdAtMs)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <form
        aria-label="Create a tenant"
        onSubmit={async (e) => {
          e.preventDefault();
          try {
            const t = await api.tenants.createTenant({ name: name.trim() });
            setName("");
            await Promise.all([reload(), reloadTenants(t.name)]);
            setNotice({ kind: "ok", text: `Tenant ${t.name} created; it is now selected.` });
          } catch (err) {
            setNotice({ kind: "error", text: errorText(err) });
          }
        }}
      >
        <h2>Create a tenant</h2>
        <label>
          Name (lowercase letters, digits and dashes)
          <input required value={name} onChange={(e) => setName(e.target.value)} />
        </label>
        <button type="submit">Create tenant</button>
      </form>
    </>
  );
}
