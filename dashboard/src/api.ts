// Clients of the control plane's admin API, generated from proto/ (src/gen is
// built by `npm run generate`), over gRPC-web: the CP speaks it through
// tonic-web on its HTTP/1.1 port, binary framing (application/grpc-web+proto).
import { createClient, ConnectError, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import type { DescService } from "@bufbuild/protobuf";
import {
  DataPlaneService,
  KeyService,
  ModelService,
  ProviderService,
  RouteService,
  TenantService,
  UsageService,
} from "./gen/tollgate/admin/v1/admin_pb";
import { AuthService } from "./gen/tollgate/admin/v1/auth_pb";
import { BillingService } from "./gen/tollgate/admin/v1/billing_pb";
import { CachePolicyService } from "./gen/tollgate/admin/v1/cache_pb";
import { ConsoleService } from "./gen/tollgate/admin/v1/dashboard_pb";
import { DataPlaneGroupService } from "./gen/tollgate/admin/v1/dp_groups_pb";
import { GuardrailService } from "./gen/tollgate/admin/v1/guardrails_pb";
import { RateLimitService } from "./gen/tollgate/admin/v1/rate_limits_pb";
import { StatusService } from "./gen/tollgate/admin/v1/status_pb";
import { UsageQueryService } from "./gen/tollgate/admin/v1/usage_query_pb";

export type Api = {
  auth: Client<typeof AuthService>;
  tenants: Client<typeof TenantService>;
  providers: Client<typeof ProviderService>;
  models: Client<typeof ModelService>;
  routes: Client<typeof RouteService>;
  keys: Client<typeof KeyService>;
  usage: Client<typeof UsageService>;
  dataPlanes: Client<typeof DataPlaneService>;
  billing: Client<typeof BillingService>;
  usageQuery: Client<typeof UsageQueryService>;
  guardrails: Client<typeof GuardrailService>;
  cache: Client<typeof CachePolicyService>;
  console: Client<typeof ConsoleService>;
  dpGroups: Client<typeof DataPlaneGroupService>;
  rateLimits: Client<typeof RateLimitService>;
  status: Client<typeof StatusService>;
};

/** Clients that send `authorization: Bearer <token>` when a token is set. */
export function makeApi(token: string | null, baseUrl = window.location.origin): Api {
  const bearer: Interceptor = (next) => async (req) => {
    if (token) req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
  const transport = createGrpcWebTransport({
    baseUrl,
    useBinaryFormat: true,
    interceptors: [bearer],
  });
  const c = <S extends DescService>(s: S) => createClient(s, transport);
  return {
    auth: c(AuthService),
    tenants: c(TenantService),
    providers: c(ProviderService),
    models: c(ModelService),
    routes: c(RouteService),
    keys: c(KeyService),
    usage: c(UsageService),
    dataPlanes: c(DataPlaneService),
    billing: c(BillingService),
    usageQuery: c(UsageQueryService),
    guardrails: c(GuardrailService),
    cache: c(CachePolicyService),
    console: c(ConsoleService),
    dpGroups: c(DataPlaneGroupService),
    rateLimits: c(RateLimitService),
    status: c(StatusService),
  };
}

/** The API's own error text, for showing to the user. */
export function errorText(e: unknown): string {
  if (e instanceof ConnectError) return e.rawMessage || e.message;
  if (e instanceof Error) return e.message;
  return String(e);
}

/** True when the session is gone (expired, signed out, disabled). */
export function isUnauthenticated(e: unknown): boolean {
  return e instanceof ConnectError && e.code === 16;
}
