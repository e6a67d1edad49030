-- Providers a caller key may be routed to: comma-separated provider ids of
-- its tenant; '' = every provider of the tenant (no restriction).
ALTER TABLE caller_keys ADD COLUMN allowed_providers TEXT NOT NULL DEFAULT '';
