-- Who may do what in corral's database. Run by every `corral db migrate`
-- after the migrations (corral.queue.migrations), in the same transaction;
-- idempotent, so it also repairs grants someone changed by hand.
--
-- * corral_worker (NOLOGIN group): EXECUTE on the functions a worker of this
--   release calls, and nothing else: no table, no sequence, no admin
--   function, no CREATE. Those functions are SECURITY DEFINER (they run as
--   the schema owner, who runs this file) with a pinned search_path, and
--   each checks its caller's worker id and credential. Worker login roles
--   are members of it only (`corral db create-worker-role NAME`).
-- * corral_admin (NOLOGIN group): every corral table, sequence and function
--   (the admin CLI, the operator). The schema owner, who migrates, has all
--   of that already.
-- * PUBLIC: nothing on corral's objects (PostgreSQL grants EXECUTE on new
--   functions to PUBLIC unless told otherwise).
--
-- Roles belong to the server, not the database: several corral databases on
-- one server share the two group roles (a worker role's credential for one
-- database is a worker id of that database only).

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'corral_worker') THEN
        CREATE ROLE corral_worker NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- another database's migration created it a moment ago
END
$$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'corral_admin') THEN
        CREATE ROLE corral_admin NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END
$$;

DO $$
DECLARE
    v_object text;
BEGIN
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO corral_worker, corral_admin', current_schema());
    FOR v_object IN
        SELECT p.oid::regprocedure::text FROM pg_proc p
         WHERE p.pronamespace = current_schema()::regnamespace AND p.proname LIKE 'corral\_%'
    LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC, corral_worker', v_object);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO corral_admin', v_object);
    END LOOP;
    FOR v_object IN
        SELECT format('%I', c.relname) FROM pg_class c
         WHERE c.relnamespace = current_schema()::regnamespace AND c.relname LIKE 'corral\_%'
           AND c.relkind IN ('r', 'p')
    LOOP
        EXECUTE format('REVOKE ALL ON TABLE %s FROM PUBLIC, corral_worker', v_object);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE %s TO corral_admin',
                       v_object);
    END LOOP;
    FOR v_object IN
        SELECT format('%I', c.relname) FROM pg_class c
         WHERE c.relnamespace = current_schema()::regnamespace AND c.relname LIKE 'corral\_%'
           AND c.relkind = 'S'
    LOOP
        EXECUTE format('REVOKE ALL ON SEQUENCE %s FROM PUBLIC, corral_worker', v_object);
        EXECUTE format('GRANT USAGE, SELECT, UPDATE ON SEQUENCE %s TO corral_admin', v_object);
    END LOOP;
END
$$;

-- Nobody but the owner creates objects in corral's schema, nor in public.
-- The SECURITY DEFINER functions run as the schema owner with search_path
-- pg_catalog, public, pg_temp: a role that could CREATE in public could plant
-- a function there that PostgreSQL prefers to a built-in one for its exact
-- argument types (public.array_fill(text, integer[]) over
-- pg_catalog.array_fill(anyelement, integer[]), which corral_reap_v1 calls)
-- and so run its own code as the owner. PostgreSQL 15 stopped granting
-- CREATE on public to PUBLIC; a database made by 14 or earlier (or
-- pg_upgrade'd from one) still grants it. Revoke it; where the migrating
-- role may not (it does not own the schema), refuse to go on, naming the fix.
DO $$
DECLARE
    v_schema text;
BEGIN
    FOREACH v_schema IN ARRAY ARRAY['public', current_schema()] LOOP
        CONTINUE WHEN to_regnamespace(v_schema) IS NULL;
        IF has_schema_privilege('public', v_schema, 'CREATE')
           OR has_schema_privilege('corral_worker', v_schema, 'CREATE') THEN
            BEGIN
                EXECUTE format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC, corral_worker', v_schema);
            EXCEPTION WHEN insufficient_privilege THEN
                NULL;  -- reported below
            END;
        END IF;
        IF has_schema_privilege('public', v_schema, 'CREATE')
           OR has_schema_privilege('corral_worker', v_schema, 'CREATE') THEN
            RAISE EXCEPTION 'every role may create objects in schema %, where corral''s '
                            'functions look up names: a worker could run its own code as '
                            'the schema''s owner', v_schema
                USING ERRCODE = '42501',
                      HINT = format('have the owner of schema %I run: REVOKE CREATE ON SCHEMA %I '
                                    'FROM PUBLIC', v_schema, v_schema);
        END IF;
    END LOOP;
END
$$;

-- What a worker of this release calls, and only that.
GRANT EXECUTE ON FUNCTION
    corral_enroll_v2(text, text, text[], integer, text, text),
    corral_authenticate_v2(bigint, text, text, text[], integer, text),
    -- claim_v2 stays for workers of the previous release during a rolling upgrade.
    corral_claim_v2(bigint, text, text[], integer, double precision),
    -- claim_v3/_v4 and complete_v3/_v4 stay for workers of earlier releases too.
    corral_claim_v3(bigint, text, text[], integer, double precision),
    corral_claim_v4(bigint, text, text[], integer, double precision),
    corral_claim_v5(bigint, text, text[], integer, double precision),
    corral_complete_v3(bigint, text, bigint[], bigint[], jsonb[]),
    corral_complete_v4(bigint, text, bigint[], bigint[], jsonb[]),
    corral_complete_v5(bigint, text, bigint[], bigint[], jsonb[]),
    corral_fail_v2(bigint, text, bigint[], bigint[], text[], text[], boolean[]),
    corral_release_v2(bigint, text, bigint[], bigint[]),
    corral_heartbeat_v2(bigint, text, integer, double precision, bigint[]),
    corral_heartbeat_v3(bigint, text, integer, double precision, bigint[]),
    -- heartbeat_v4 renews only the leases running low (0016).
    corral_heartbeat_v4(bigint, text, integer, double precision, bigint[], double precision),
    corral_drain_self_v1(bigint, text),
    corral_mark_drained_v1(bigint, text),
    -- The one that checks no caller: it only retries lapsed leases, at most
    -- 1,000 a call (0018), one caller at a time (docs/security.md).
    corral_reap_v1(integer),
    corral_purge_finished_v2(bigint, text, double precision, integer),
    corral_worker_due_schedules_v1(bigint, text, integer, double precision),
    corral_worker_fire_schedule_v1(bigint, text, text, timestamp with time zone[],
                                   timestamp with time zone[], timestamp with time zone),
    corral_worker_lock_schedule_v1(bigint, text, text),
    corral_worker_declare_schedule_v1(bigint, text, text, text, jsonb, double precision, text,
                                      text, text, integer, text, integer,
                                      timestamp with time zone, timestamp with time zone, text,
                                      text, double precision, timestamp with time zone),
    corral_worker_rollup_throughput_v1(bigint, text, integer)
TO corral_worker;
