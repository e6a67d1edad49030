import { createContext, useContext } from "react";
import type { Api } from "./api";
import type { Principal } from "./gen/tollgate/admin/v1/auth_pb";

export type Session = {
  api: Api;
  principal: Principal;
  /** Tenant the pages show: the user's own, or the operator's choice. */
  tenant: string;
  /** owner | admin | member | viewer */
  role: string;
  isOperator: boolean;
  /** Re-reads the tenant list (after an operator creates one) and selects `select`. */
  reloadTenants: (select?: string) => Promise<void>;
};

export const SessionContext = createContext<Session | null>(null);

export function useSession(): Session {
  const s = useContext(SessionContext);
  if (!s) throw new Error("useSession outside a signed-in page");
  return s;
}

const RANK: Record<string, number> = { viewer: 0, member: 1, admin: 2, owner: 3 };

/** Mirrors the CP's role matrix, to hide buttons the API would refuse. */
export function can(role: string, need: "read" | "createKey" | "write" | "users"): boolean {
  const r = RANK[role] ?? 0;
  return r >= { read: 0, createKey: 1, write: 2, users: 2 }[need];
}

export const TOKEN_KEY = "tollgate.session";
