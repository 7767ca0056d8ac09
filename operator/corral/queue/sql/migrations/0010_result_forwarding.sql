-- 0010: result forwarding. A job may name a result queue; when it
-- completes, its result is enqueued there as a job of kind 'result'
-- ({job_id, kind, queue, attempt, result, finished_at}) by the statement that
-- finishes it, so exactly once.
--
-- * corral_jobs and corral_jobs_finished gain result_queue.
-- * corral_insert_jobs_v2 / corral_enqueue_v2: corral_enqueue_v1 plus each
--   job's result queue. Clients call v2 only for jobs that name one; the v1
--   functions now call the v2 ones (no result queues), so one body remains.
-- * corral_complete_v2 forwards, and corral_complete_v1 and _v3 now finish
--   jobs through it (v3 after its credential and holder checks), replaced in
--   place like 0006 did: their signatures and their answers are unchanged,
--   and a worker of the previous release completing a job that names a
--   result queue forwards it too, rather than silently dropping it.

ALTER TABLE corral_jobs
    ADD COLUMN result_queue text,
    ADD CONSTRAINT job_result_queue_named CHECK (
        result_queue IS NULL OR (result_queue <> '' AND result_queue <> '*')
    );
ALTER TABLE corral_jobs_finished ADD COLUMN result_queue text;

-- corral_insert_jobs_v1 plus each job's result queue (NULL elements: none).
-- Internal to corral_enqueue_v2.
CREATE FUNCTION corral_insert_jobs_v2(
    p_kinds text[], p_queues text[], p_payloads jsonb[], p_priorities integer[],
    p_regions text[], p_run_ats timestamptz[], p_expires_ats timestamptz[],
    p_max_attempts integer[], p_dedupe_keys text[], p_only bigint[], p_result_queues text[]
) RETURNS bigint[]
LANGUAGE plpgsql
AS $$
DECLARE
    v_ids bigint[];
BEGIN
    WITH input AS MATERIALIZED (
        -- Ids are drawn up front so each input row knows its job's id
        -- without relying on the order INSERT assigns identities in.
        SELECT t.ord, nextval('corral_jobs_id_seq'::regclass) AS new_id,
               t.kind, coalesce(t.queue, t.kind) AS queue, t.payload, t.priority,
               t.region, t.run_at, t.expires_at, t.max_attempts, t.dedupe_key, t.result_queue
          FROM unnest(p_kinds, p_queues, p_payloads, p_priorities, p_regions, p_run_ats,
                      p_expires_ats, p_max_attempts, p_dedupe_keys, p_result_queues)
               WITH ORDINALITY AS t(kind, queue, payload, priority, region, run_at,
                                    expires_at, max_attempts, dedupe_key, result_queue, ord)
         WHERE p_only IS NULL OR t.ord = ANY(p_only)
    ), ins AS (
        INSERT INTO corral_jobs AS j (id, kind, queue, payload, priority, region, state, run_at,
                                      expires_at, max_attempts, dedupe_key, result_queue)
        SELECT i.new_id, i.kind, i.queue, coalesce(i.payload, '{}'::jsonb),
               coalesce(i.priority, 0), coalesce(i.region, ''),
               CASE WHEN i.run_at > now() THEN 'scheduled' ELSE 'pending' END,
               coalesce(i.run_at, now()), i.expires_at,
               coalesce(i.max_attempts, q.max_attempts, 20), i.dedupe_key, i.result_queue
          FROM input i LEFT JOIN corral_queues q ON q.name = i.queue
         ORDER BY i.ord
        ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL DO NOTHING
    )
    SELECT array_agg(i.new_id ORDER BY i.ord) INTO v_ids FROM input i;
    RETURN v_ids;
END
$$;

-- corral_enqueue_v1 plus each job's result queue (NULL elements: none): a
-- job that names one has its result enqueued there when it completes
-- (corral_complete_v2).
CREATE FUNCTION corral_enqueue_v2(
    p_kinds text[], p_queues text[], p_payloads jsonb[], p_priorities integer[],
    p_regions text[], p_run_ats timestamptz[], p_expires_ats timestamptz[],
    p_max_attempts integer[], p_dedupe_keys text[], p_result_queues text[]
) RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
DECLARE
    v_ids bigint[];
    v_check bigint[];
    v_missing bigint[];
    v_ord bigint;
    v_id bigint;
BEGIN
    v_ids := corral_insert_jobs_v2(p_kinds, p_queues, p_payloads, p_priorities, p_regions,
                                   p_run_ats, p_expires_ats, p_max_attempts, p_dedupe_keys,
                                   NULL, p_result_queues);
    -- Rows with a dedupe key: answer with the id of the unfinished job that
    -- holds the key now (the row just inserted, an older job, or an earlier
    -- row of this batch). If the holder finished between the insert and
    -- this lookup, the key is free again: insert those rows once more.
    SELECT array_agg(k.ord) INTO v_check
      FROM unnest(p_dedupe_keys) WITH ORDINALITY AS k(key, ord) WHERE k.key IS NOT NULL;
    FOR v_round IN 1..3 LOOP
        EXIT WHEN v_check IS NULL;
        v_missing := NULL;
        FOREACH v_ord IN ARRAY v_check LOOP
            SELECT e.id INTO v_id FROM corral_jobs e WHERE e.dedupe_key = p_dedupe_keys[v_ord];
            IF FOUND THEN
                v_ids[v_ord] := v_id;
            ELSE
                v_missing := v_missing || v_ord;
            END IF;
        END LOOP;
        EXIT WHEN v_missing IS NULL;
        IF v_round = 3 THEN
            RAISE EXCEPTION 'dedupe keys kept changing hands while enqueueing; retry the enqueue'
                USING ERRCODE = '40001';
        END IF;
        PERFORM corral_insert_jobs_v2(p_kinds, p_queues, p_payloads, p_priorities, p_regions,
                                      p_run_ats, p_expires_ats, p_max_attempts, p_dedupe_keys,
                                      v_missing, p_result_queues);
        v_check := v_missing;
    END LOOP;

    PERFORM pg_notify('corral_jobs', s.queue)
       FROM (SELECT DISTINCT coalesce(t.queue, t.kind) AS queue
               FROM unnest(p_kinds, p_queues, p_run_ats) AS t(kind, queue, run_at)
              WHERE t.run_at IS NULL OR t.run_at <= now()) s;
    RETURN QUERY SELECT unnest(v_ids);
END
$$;

-- The v1 enqueue functions: the v2 ones without result queues.
CREATE OR REPLACE FUNCTION corral_insert_jobs_v1(
    p_kinds text[], p_queues text[], p_payloads jsonb[], p_priorities integer[],
    p_regions text[], p_run_ats timestamptz[], p_expires_ats timestamptz[],
    p_max_attempts integer[], p_dedupe_keys text[], p_only bigint[]
) RETURNS bigint[]
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN corral_insert_jobs_v2(p_kinds, p_queues, p_payloads, p_priorities, p_regions,
                                 p_run_ats, p_expires_ats, p_max_attempts, p_dedupe_keys,
                                 p_only, NULL);
END
$$;

CREATE OR REPLACE FUNCTION corral_enqueue_v1(
    p_kinds text[], p_queues text[], p_payloads jsonb[], p_priorities integer[],
    p_regions text[], p_run_ats timestamptz[], p_expires_ats timestamptz[],
    p_max_attempts integer[], p_dedupe_keys text[]
) RETURNS SETOF bigint
LANGUAGE plpgsql
AS $$
BEGIN
    RETURN QUERY SELECT * FROM corral_enqueue_v2(
        p_kinds, p_queues, p_payloads, p_priorities, p_regions, p_run_ats, p_expires_ats,
        p_max_attempts, p_dedupe_keys, NULL);
END
$$;

-- corral_complete_v1 plus each job's result (NULL elements: no result). A
-- job that names a result_queue has its result enqueued there, as a job of
-- kind 'result', by the statement that finishes it: a completion retried
-- after a lost connection, or fenced (lease lost), finishes nothing and so
-- forwards nothing, and a forward is never without its completion.
CREATE OR REPLACE FUNCTION corral_complete_v2(p_ids bigint[], p_tokens bigint[], p_results jsonb[])
RETURNS bigint[]
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_rejected bigint[];
    v_forwarded text[];
BEGIN
    PERFORM corral_relax_ack_v1();
    WITH done AS (
        DELETE FROM corral_jobs j
         USING unnest(p_ids, p_tokens, p_results) AS d(id, token, result)
         WHERE j.id = ANY(p_ids) AND j.id = d.id AND j.lease_token = d.token
        RETURNING j.*, d.result AS new_result
    ), moved AS (
        INSERT INTO corral_jobs_finished (id, kind, queue, payload, priority, region, state,
            run_at, expires_at, attempt, max_attempts, dedupe_key, worker_id, last_error,
            last_error_reason, enqueued_at, started_at, result, result_queue)
        SELECT d.id, d.kind, d.queue, d.payload, d.priority, d.region, 'completed',
               d.run_at, d.expires_at, d.attempt, d.max_attempts, d.dedupe_key, d.worker_id,
               d.last_error, d.last_error_reason, d.enqueued_at, d.started_at, d.new_result,
               d.result_queue
          FROM done d
         WHERE NOT EXISTS (SELECT 1 FROM corral_queues q
                            WHERE q.name = d.queue AND NOT q.keep_completed)
    ), forwarded AS (
        INSERT INTO corral_jobs AS f (kind, queue, payload, priority, state, max_attempts)
        SELECT 'result', d.result_queue,
               jsonb_build_object('job_id', d.id, 'kind', d.kind, 'queue', d.queue,
                                  'attempt', d.attempt, 'result', d.new_result,
                                  'finished_at', now()),
               d.priority, 'pending', coalesce(q.max_attempts, 20)
          FROM done d LEFT JOIN corral_queues q ON q.name = d.result_queue
         WHERE d.result_queue IS NOT NULL
        RETURNING f.queue
    )
    SELECT coalesce(array_agg(x.id), '{}'),
           (SELECT array_agg(DISTINCT f.queue) FROM forwarded f)
      INTO v_rejected, v_forwarded
      FROM unnest(p_ids) AS x(id)
     WHERE x.id NOT IN (SELECT d.id FROM done d);
    PERFORM pg_notify('corral_jobs', w.queue) FROM unnest(v_forwarded) AS w(queue);
    RETURN v_rejected;
END
$$;

-- corral_complete_v2 without results.
CREATE OR REPLACE FUNCTION corral_complete_v1(p_ids bigint[], p_tokens bigint[])
RETURNS bigint[]
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN corral_complete_v2(p_ids, p_tokens, NULL);
END
$$;

CREATE OR REPLACE FUNCTION corral_complete_v3(
    p_worker_id bigint, p_credential text, p_ids bigint[], p_tokens bigint[], p_results jsonb[]
) RETURNS bigint[]
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_ids bigint[] := p_ids;
    v_tokens bigint[] := p_tokens;
    v_results jsonb[] := p_results;
    v_rejected bigint[];
    v_lost bigint[];
BEGIN
    PERFORM 1 FROM corral_workers w
     WHERE w.id = p_worker_id
       AND w.credential_hash = encode(sha256(convert_to(p_credential, 'UTF8')), 'hex')
       AND (w.credential_expires_at IS NULL OR w.credential_expires_at > now())
       AND w.state <> 'removed';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'worker % is not enrolled, removed, or its credential is wrong or expired',
            p_worker_id USING ERRCODE = 'CR401';
    END IF;
    -- The holder check is its own primary-key pass, not a condition of the
    -- DELETE (in corral_complete_v2): there it would shrink the planner's row estimate and
    -- turn the hash join into a nested loop, O(batch^2). A job someone else
    -- holds now cannot become the caller's with the same lease token, so
    -- checking first is as safe as checking in the same statement.
    IF EXISTS (SELECT 1 FROM corral_jobs o
                WHERE o.id = ANY(p_ids) AND o.worker_id IS DISTINCT FROM p_worker_id) THEN
        SELECT coalesce(array_agg(x.id ORDER BY x.ord), '{}'),
               coalesce(array_agg(x.token ORDER BY x.ord), '{}'),
               CASE WHEN p_results IS NOT NULL THEN array_agg(x.result ORDER BY x.ord) END
          INTO v_ids, v_tokens, v_results
          FROM unnest(p_ids, p_tokens, p_results) WITH ORDINALITY AS x(id, token, result, ord)
         WHERE EXISTS (SELECT 1 FROM corral_jobs o
                        WHERE o.id = x.id AND o.worker_id = p_worker_id);
    END IF;
    -- The rest is corral_complete_v2's: the same statement, results forwarded.
    v_lost := corral_complete_v2(v_ids, v_tokens, v_results);
    SELECT coalesce(array_agg(x.id), '{}') INTO v_rejected
      FROM unnest(p_ids) AS x(id)
     WHERE NOT x.id = ANY(v_ids) OR x.id = ANY(v_lost);
    RETURN v_rejected;
END
$$;
