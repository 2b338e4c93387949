-- The demo shop's source tables (../../docs/demo-domain.md): run by `headwater up` as the owner
-- (postgres.user) in postgres.database on every start, so it must be safe to run again.
CREATE TABLE IF NOT EXISTS public.customers (
    customer_id text PRIMARY KEY,
    name        text,
    email       text,
    country     char(2),
    segment     text CHECK (segment IN ('consumer', 'business', 'vip')),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
