import { useState } from "react";
import { errorText } from "../api";
import { ConfirmButton } from "../components/ConfirmButton";
import { CopyButton } from "../components/CopyButton";
import { Field } from "../components/Field";
import { Notice, type NoticeState } from "../components/Notice";
import { useLoad } from "../components/useLoad";
import { when } from "../format";
import type { DataPlaneGroup } from "../gen/tollgate/admin/v1/dp_groups_pb";
import { can, useSession } from "../session";

/** A group or token name: one word of at most 200 characters (what the control plane accepts). */
export function checkGroupName(name: string): string | null {
  const t = name.trim();
  if (!/^\S{1,200}$/.test(t)) return "A name without spaces (up to 200 characters).";
  if (t === "shared") return "\"shared\" is the built-in group of the control plane's own data-plane token.";
  return null;
}

/** Expiry in days typed in the token form: empty = never. */
export function checkExpiryDays(days: string): number | string {
  const t = days.trim();
  if (!t) return 0;
  const d = Number(t);
  return Number.isInteger(d) && d > 0 && d <= 3650 ? d : "A whole number of days between 1 and 3650 (empty: never).";
}

/** Tokens of one group: listed by last 4, created (shown once), revoked (asked twice). */
export function GroupTokens({ group, tenant, writable }: { group: DataPlaneGroup; tenant: string; writable: boolean }) {
  const { api } = useSession();
  const [notice, setNotice] = useState<NoticeState>(null);
  const [created, setCreated] = useState<{ name: string; secret: string } | null>(null);
  const [name, setName] = useState("");
  const [days, setDays] = useState("");
  const [errors, setErrors] = useState<{ name?: string; days?: string }>({});
  const { data, error, reload } = useLoad(() => api.dpGroups.listDataPlaneTokens({ group: group.id, tenant }), [api, group.id, tenant]);
  return (
    <section aria-label={`Tokens of ${group.name}`} className="card">
      <h2>Registration tokens of {group.name}</h2>
      <Notice notice={notice} />
      {created && (
        <div className="secret" role="region" aria-label="New registration token">
          <p>
            Token <strong>{created.name}</strong> created. Copy it now: it is shown only once. Start a data plane with{" "}
            <code>tollgate-dp --cp URL --token-file FILE</code>.
          </p>
          <p>
            <code data-testid="new-dp-token">{created.secret}</code> <CopyButton text={created.secret} label="Copy token" />
          </p>
          <button type="button" onClick={() => setCreated(null)}>
            I have copied it
          </button>
        </div>
      )}
      {error && <p role="alert" className="notice error">{error}</p>}
      {data && (
        <div className="scroll">
          <table>
            <caption>Tokens of {group.name}</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">Last 4</th>
                <th scope="col">Created</th>
                <th scope="col">Expires</th>
                <th scope="col">State</th>
                {writable && <th scope="col">Actions</th>}
              </tr>
            </thead>
            <tbody>
              {data.tokens.length === 0 && (
                <tr>
                  <td colSpan={6}>No tokens yet.</td>
                </tr>
              )}
              {data.tokens.map((t) => (
                <tr key={t.id}>
                  <td>{t.name}</td>
                  <td className="nowrap">
                    <code>…{t.last4}</code>
                  </td>
                  <td>{when(t.createdAtMs)}</td>
                  <td>{t.expiresAtMs ? when(t.expiresAtMs) : "never"}</td>
                  <td>{t.revokedAtMs ? `revoked ${when(t.revokedAtMs)}` : "active"}</td>
                  {writable && (
                    <td>
                      {!t.revokedAtMs && (
                        <ConfirmButton
                          label={`Revoke ${t.name}`}
                          confirmLabel={`Really revoke ${t.name} (its data planes disconnect)`}
                          onConfirm={async () => {
                            try {
                              await api.dpGroups.revokeDataPlaneToken({ tokenId: t.id, tenant });
                              setNotice({ kind: "ok", text: `Token ${t.name} revoked; its data planes are disconnected.` });
                              await reload();
                            } catch (e) {
                              setNotice({ kind: "error", text: errorText(e) });
                            }
                          }}
                        />
                      )}
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {writable && (
        <form
          aria-label={`Create a token for ${group.name}`}
          noValidate
          onSubmit={async (e) => {
            e.preventDefault();
            const errs: { name?: string; days?: string } = {};
            if (!/^\S{1,200}$/.test(name.trim())) errs.name = "A name without spaces (up to 200 characters), e.g. rack-1.";
            const d = checkExpiryDays(days);
            if (typeof d === "string") errs.days = d;
            setErrors(errs);
            if (Object.keys(errs).length) return;
            try {
              const r = await api.dpGroups.createDataPlaneToken({ group: group.id, tenant, name: name.trim(), expiresAtMs: d ? BigInt(Date.now() + (d as number) * 86_400_000) : 0n });
              setCreated({ name: r.token?.name ?? name.trim(), secret: r.secret });
              setNotice(null);
              setName("");
              setDays("");
              await reload();
            } catch (err) {
              setNotice({ kind: "error", text: errorText(err) });
            }
          }}
        >
          <Field label="Token name" error={errors.name}>
            <input value={name} onChange={(e) => setName(e.target.value)} />
          </Field>
          <Field label="Expires after (days, empty: never)" error={errors.days}>
            <input inputMode="numeric" value={days} onChange={(e) => setDays(e.target.value)} />
          </Field>
          <button type="submit">Create token</button>
        </form>
      )}
    </section>
  );
}

function Nodes() {
  const { api } = useSession();
  const { data, error, reload } = useLoad(() => api.dataPlanes.getConfigStatus({}), [api]);
  if (error) return <p role="alert" className="notice error">{error}</p>;
  if (!data) return <p role="status">Loading…</p>;
  return (
    <>
      <p>
        Current config version <strong>{String(data.version)}</strong>.{" "}
        <button type="button" onClick={() => void reload()}>
          Refresh
        </button>
      </p>
      <div className="scroll">
        <table>
          <caption>Data planes connected to this control plane</caption>
          <thead>
            <tr>
              <th scope="col">Node</th>
              <th scope="col">Connected</th>
              <th scope="col">Group</th>
              <th scope="col">Acked version</th>
              <th scope="col">Rejected</th>
              <th scope="col">Last seen</th>
            </tr>
          </thead>
          <tbody>
            {data.dataPlanes.length === 0 && (
              <tr>
                <td colSpan={6}>No data plane has connected yet.</td>
              </tr>
            )}
            {data.dataPlanes.map((d) => (
              <tr key={d.nodeId}>
                <td>{d.nodeId}</td>
                <td>{d.connected ? "yes" : <span className="warn">no</span>}</td>
                <td>{d.groupName || "shared"}</td>
                <td>
                  {String(d.ackedVersion)}
                  {d.ackedVersion < data.version ? <span className="warn"> (behind)</span> : null}
                </td>
                <td>{d.rejectedVersion ? `v${d.rejectedVersion}: ${d.rejectReason}` : "—"}</td>
                <td>{when(d.lastSeenMs)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </>
  );
}

export default function DataPlanes() {
  const { api, tenant, role, isOperator } = useSession();
  const [notice, setNotice] = useState<NoticeState>(null);
  const [open, setOpen] = useState<string | null>(null);
  const [name, setName] = useState("");
  const [scoped, setScoped] = useState(true);
  const [nameError, setNameError] = useState<string | undefined>();
  // Operators list every group; tenant users their tenant's (tenant-scoped) groups.
  const scope = isOperator ? "" : tenant;
  const { data, error, reload } = useLoad(async () => {
    const [g, t] = await Promise.all([api.dpGroups.listDataPlaneGroups({ tenant: scope }), isOperator ? api.tenants.listTenants({}) : Promise.resolve({ tenants: [] })]);
    return { groups: g.groups, tenantNames: new Map(t.tenants.map((x) => [x.id, x.name])) };
  }, [api, scope, isOperator]);
  // Owners and admins manage tokens of their tenant's groups; operators every token.
  const writable = can(role, "write");
  const groupOpen = data?.groups.find((g) => g.id === open) ?? null;
  return (
    <>
      <Notice notice={notice} />
      {error && <p role="alert" className="notice error">{error}</p>}
      {data && (
        <div className="scroll">
          <table>
            <caption>Data-plane groups</caption>
            <thead>
              <tr>
                <th scope="col">Group</th>
                <th scope="col">Receives</th>
                <th scope="col">Created</th>
                <th scope="col">Tokens</th>
              </tr>
            </thead>
            <tbody>
              {data.groups.length === 0 && (
                <tr>
                  <td colSpan={4}>{isOperator ? "No groups yet (data planes with the built-in token are in the group shared)." : `No data-plane group for ${tenant}: an operator creates one.`}</td>
                </tr>
              )}
              {data.groups.map((g) => (
                <tr key={g.id}>
                  <td>{g.name}</td>
                  <td>{g.tenantId ? `tenant ${data.tenantNames.get(g.tenantId) ?? (isOperator ? g.tenantId : tenant)} only` : "every tenant (shared)"}</td>
                  <td>{when(g.createdAtMs)}</td>
                  <td className="actions">
                    <button type="button" aria-expanded={open === g.id} onClick={() => setOpen(open === g.id ? null : g.id)}>
                      Tokens of {g.name}
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {groupOpen && <GroupTokens key={groupOpen.id} group={groupOpen} tenant={scope} writable={writable} />}
      {isOperator && can(role, "write") && (
        <form
          aria-label="Create a data-plane group"
          noValidate
          onSubmit={async (e) => {
            e.preventDefault();
            const err = checkGroupName(name);
            setNameError(err ?? undefined);
            if (err) return;
            if (scoped && !tenant) {
              setNotice({ kind: "error", text: "Pick a tenant in the header first, or make the group shared." });
              return;
            }
            try {
              const g = await api.dpGroups.createDataPlaneGroup({ name: name.trim(), tenant: scoped ? tenant : "" });
              setNotice({ kind: "ok", text: `Group ${g.name} created (${g.tenantId ? `tenant ${tenant} only` : "shared"}).` });
              setName("");
              setOpen(g.id);
              await reload();
            } catch (err2) {
              setNotice({ kind: "error", text: errorText(err2) });
            }
          }}
        >
          <h2>Create a data-plane group</h2>
          <Field label="Group name" error={nameError}>
            <input value={name} onChange={(e) => setName(e.target.value)} />
          </Field>
          <Field label="Receives">
            <select value={scoped ? "tenant" : "shared"} onChange={(e) => setScoped(e.target.value === "tenant")}>
              <option value="tenant">tenant {tenant || "(pick one)"} only</option>
              <option value="shared">every tenant (shared)</option>
            </select>
          </Field>
          <button type="submit">Create group</button>
        </form>
      )}
      {isOperator ? <Nodes /> : <p className="hint">The connected nodes are listed for operators (data planes may serve several tenants).</p>}
    </>
  );
}
