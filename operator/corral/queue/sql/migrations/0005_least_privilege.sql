-- 0005: least privilege. A worker touches only its own jobs, and only
-- through these functions (issue 17).
--
-- * Workers connect as a login role that is a member of `corral_worker`
--   (`corral db create-worker-role NAME`); `sql/privileges.sql`, run by
--   every `corral db migrate`, creates that group role and `corral_admin`
--   and grants `corral_worker` EXECUTE on the functions below and nothing
--   else. They are SECURITY DEFINER (they run as the schema owner) with a
--   pinned search_path, so the worker needs no right on any table.
-- * Every worker function checks its caller (worker id + credential, once
--   per call: once per batch) and acknowledgements touch only jobs whose
--   lease the caller holds (`corral_jobs.worker_id`), so a second worker
--   cannot complete, fail, release or extend a job it does not hold.
-- * Enrollment tokens may name the queues they admit (pool tokens do: the
--   pool's queues); the worker row keeps them (`enrolled_queues`) and a
--   claim serves only the worker's queues in its enrolled region.
-- * Server-side caps: a claim takes at most 1,000 jobs and a lease lasts
--   1 s to 1 h whatever the caller asks.
-- * Worker credentials expire (`credential_expires_at`, a day after the
--   last enrollment, authentication or heartbeat); the heartbeat renews it.
-- * The heartbeat extends only the leases of the jobs the worker names as
--   held (running, or done with the completion not yet written): a claim
--   that committed as the worker's connection broke, so it never saw it,
--   lapses and is retried instead of staying `running` while the worker lives.
-- * Retention as a worker: `corral_purge_finished_v2` never deletes jobs
--   finished less than a day ago; `corral_purge_finished_v1` (any age) is
--   for admins.
-- The v1 acknowledgements (id + lease token only) stay for workers of the
-- previous release, which still connect with an admin URL; corral_worker
-- cannot call them.

ALTER TABLE corral_enrollment_tokens ADD COLUMN queues text[];
COMMENT ON COLUMN corral_enrollment_tokens.queues IS
    'Queues a worker enrolled with this token may serve (NULL: any).';

ALTER TABLE corral_workers ADD COLUMN enrolled_queues text[];
ALTER TABLE corral_workers ADD COLUMN credential_expires_at timestamptz;
COMMENT ON COLUMN corral_workers.enrolled_queues IS
    'Queues its enrollment token admitted (NULL: any); its queues stay within them.';
COMMENT ON COLUMN corral_workers.credential_expires_at IS
    'The credential stops working after this; heartbeats push it a day ahead (NULL: never).';

-- Who is calling: raises CR401 for an unknown worker, a wrong credential or
-- an expired one; returns the row's state (the caller decides what removed
-- means for it).
CREATE FUNCTION corral_caller_state_v1(p_worker_id bigint, p_credential text) RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_state text;
BEGIN
    SELECT w.state INTO v_state FROM corral_workers w
     WHERE w.id = p_worker_id
       AND w.credential_hash = encode(sha256(convert_to(p_credential, 'UTF8')), 'hex')
       AND (w.credential_expires_at IS NULL OR w.credential_expires_at > now());
    IF NOT FOUND THEN
        RAISE EXCEPTION 'worker % is not enrolled, or its credential is wrong or expired',
            p_worker_id USING ERRCODE = 'CR401',
                  HINT = 'enroll again with a fresh enrollment token (corral tokens create)';
    END IF;
    RETURN v_state;
END
$$;

-- Exchange an enrollment token for a worker registration (corral_enroll_v1
-- plus the token's queues: a worker asking for a queue the token does not
-- admit is refused with CR403). Returns the worker's id, region and pool.
CREATE FUNCTION corral_enroll_v2(
    p_token text, p_name text, p_queues text[], p_concurrency integer, p_version text,
    p_credential_hash text
) RETURNS TABLE (worker_id bigint, region text, pool text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_token corral_enrollment_tokens%ROWTYPE;
    v_outside text[];
    v_worker_id bigint;
BEGIN
    SELECT * INTO v_token FROM corral_enrollment_tokens t
     WHERE t.token_hash = corral_hash_secret_v1(p_token)
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'enrollment token is not known' USING ERRCODE = 'CR403',
            HINT = 'mint one with: corral tokens create --region R';
    ELSIF v_token.revoked_at IS NOT NULL THEN
        RAISE EXCEPTION 'enrollment token % was revoked', v_token.display_prefix
            USING ERRCODE = 'CR403';
    ELSIF v_token.expires_at <= now() THEN
        RAISE EXCEPTION 'enrollment token % expired at %', v_token.display_prefix,
            v_token.expires_at USING ERRCODE = 'CR403';
    ELSIF v_token.uses_remaining <= 0 THEN
        RAISE EXCEPTION 'enrollment token % has no uses left', v_token.display_prefix
            USING ERRCODE = 'CR403';
    END IF;
    IF cardinality(p_queues) IS DISTINCT FROM cardinality(ARRAY(SELECT DISTINCT unnest(p_queues)))
       OR coalesce(cardinality(p_queues), 0) = 0 THEN
        RAISE EXCEPTION 'a worker enrolls for one or more distinct queues (got %)', p_queues
            USING ERRCODE = 'CR403';
    END IF;
    IF v_token.queues IS NOT NULL THEN
        v_outside := ARRAY(SELECT q FROM unnest(p_queues) q WHERE q <> ALL (v_token.queues));
        IF cardinality(v_outside) > 0 THEN
            RAISE EXCEPTION 'enrollment token % admits queues %, not %', v_token.display_prefix,
                v_token.queues, v_outside USING ERRCODE = 'CR403',
                HINT = 'serve only the queues of the pool the token was minted for';
        END IF;
    END IF;
    UPDATE corral_enrollment_tokens t
       SET uses_remaining = t.uses_remaining - 1, last_used_at = now()
     WHERE t.id = v_token.id;
    INSERT INTO corral_workers (name, region, pool, queues, concurrency, version,
                                credential_hash, token_id, enrolled_queues,
                                credential_expires_at)
    VALUES (p_name, v_token.region, v_token.pool, p_queues, p_concurrency, p_version,
            p_credential_hash, v_token.id, v_token.queues, now() + interval '1 day')
    RETURNING corral_workers.id INTO v_worker_id;
    RETURN QUERY SELECT v_worker_id, v_token.region, v_token.pool;
END
$$;

-- A restarted worker re-authenticates with its stored credential and
-- refreshes what it says about itself (the queues only within those its
-- token admitted: CR403 otherwise). A drain the worker asked for itself
-- ended with the process that asked: the row is active again; an admin's
-- drain stays. Returns the state ('removed': the worker must exit).
CREATE FUNCTION corral_authenticate_v2(
    p_worker_id bigint, p_credential text, p_name text, p_queues text[],
    p_concurrency integer, p_version text
) RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_state text;
    v_enrolled text[];
    v_outside text[];
BEGIN
    v_state := corral_caller_state_v1(p_worker_id, p_credential);
    IF v_state = 'removed' THEN
        RETURN v_state;
    END IF;
    SELECT w.enrolled_queues INTO v_enrolled FROM corral_workers w WHERE w.id = p_worker_id;
    IF p_queues IS NOT NULL AND v_enrolled IS NOT NULL THEN
        v_outside := ARRAY(SELECT q FROM unnest(p_queues) q WHERE q <> ALL (v_enrolled));
        IF cardinality(v_outside) > 0 THEN
            RAISE EXCEPTION 'worker % enrolled for queues %, not %', p_worker_id, v_enrolled,
                v_outside USING ERRCODE = 'CR403',
                HINT = 'enroll again with a token for those queues';
        END IF;
    END IF;
    UPDATE corral_workers w
       SET name = coalesce(p_name, w.name), queues = coalesce(p_queues, w.queues),
           concurrency = coalesce(p_concurrency, w.concurrency),
           version = coalesce(p_version, w.version), last_heartbeat = now(),
           credential_expires_at = now() + interval '1 day',
           state = CASE WHEN w.drain_requested_by = 'self' AND w.state IN ('draining', 'drained')
                        THEN 'active' ELSE w.state END,
           drain_requested_at = CASE WHEN w.drain_requested_by = 'self' THEN NULL
                                     ELSE w.drain_requested_at END,
           drained_at = CASE WHEN w.drain_requested_by = 'self' THEN NULL ELSE w.drained_at END,
           drain_requested_by = CASE WHEN w.drain_requested_by = 'self' THEN NULL
                                     ELSE w.drain_requested_by END
     WHERE w.id = p_worker_id
    RETURNING w.state INTO v_state;
    RETURN v_state;
END
$$;

-- corral_claim_v1 for a caller held to its enrollment: only the worker's own
-- queues (a queue asked for outside them is not served, and a WARNING says
-- so), only its region, at most 1,000 jobs, a lease of 1 s to 1 h.
CREATE FUNCTION corral_claim_v2(
    p_worker_id bigint, p_credential text, p_queues text[], p_batch integer,
    p_lease_s double precision
) RETURNS TABLE (
    id bigint, kind text, queue text, payload jsonb, priority smallint, region text,
    attempt integer, max_attempts integer, lease_token bigint, lease_expires_at timestamptz,
    enqueued_at timestamptz, run_at timestamptz
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    v_state text;
    v_region text;
    v_served text[];
    v_queues text[];
    v_token bigint;
    v_ids bigint[];
    v_expired bigint[];
    v_lease_until timestamptz :=
        now() + make_interval(secs => least(greatest(coalesce(p_lease_s, 60), 1), 3600));
    v_left integer := least(coalesce(p_batch, 0), 1000);
    v_got integer;
    v_lane record;
BEGIN
    -- The hash inline (same as corral_hash_secret_v1): a function call per
    -- claim costs more than the hashing.
    SELECT w.state, w.region, w.queues INTO v_state, v_region, v_served FROM corral_workers w
     WHERE w.id = p_worker_id
       AND w.credential_hash = encode(sha256(convert_to(p_credential, 'UTF8')), 'hex')
       AND (w.credential_expires_at IS NULL OR w.credential_expires_at > now());
    IF NOT FOUND THEN
        RAISE EXCEPTION 'worker % is not enrolled, or its credential is wrong or expired',
            p_worker_id USING ERRCODE = 'CR401';
    END IF;
    IF v_state = 'removed' THEN
        RAISE EXCEPTION 'worker % was removed from the fleet', p_worker_id
            USING ERRCODE = 'CR410';
    END IF;
    IF v_state <> 'active' OR v_left <= 0 THEN
        RETURN;
    END IF;
    v_queues := ARRAY(SELECT DISTINCT q FROM unnest(p_queues) q WHERE q = ANY (v_served));
    IF cardinality(v_queues) < cardinality(p_queues) THEN
        RAISE WARNING 'worker % is not enrolled for queue(s) %: not served (it serves %)',
            p_worker_id, ARRAY(SELECT q FROM unnest(p_queues) q WHERE q <> ALL (v_served)),
            v_served;
    END IF;
    IF cardinality(v_queues) = 0 THEN
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM corral_queues q WHERE q.name = '*' AND q.paused) THEN
        RETURN;
    END IF;
    PERFORM corral_relax_ack_v1();
    v_token := nextval('corral_lease_token_seq');

    PERFORM corral_promote_due_v1();

    FOR v_lane IN
        SELECT l.queue, l.region
          FROM (SELECT DISTINCT q.queue, r.region
                  FROM unnest(v_queues) AS q(queue),
                       unnest(ARRAY['', v_region]) AS r(region)) l
          CROSS JOIN LATERAL (
                SELECT h.priority, h.id FROM corral_jobs h
                 WHERE h.state = 'pending' AND h.queue = l.queue AND h.region = l.region
                 ORDER BY h.priority DESC, h.id
                 LIMIT 1) head
         WHERE NOT EXISTS (SELECT 1 FROM corral_queues p WHERE p.name = l.queue AND p.paused)
         ORDER BY head.priority DESC, head.id
    LOOP
        SELECT coalesce(array_agg(c.id) FILTER (WHERE c.expires_at IS NULL OR c.expires_at > now()), '{}'),
               coalesce(array_agg(c.id) FILTER (WHERE c.expires_at <= now()), '{}')
          INTO v_ids, v_expired
          FROM (SELECT c.id, c.expires_at FROM corral_jobs c
                 WHERE c.state = 'pending' AND c.queue = v_lane.queue
                   AND c.region = v_lane.region
                 ORDER BY c.priority DESC, c.id
                 LIMIT v_left
                   FOR UPDATE SKIP LOCKED) c;
        IF cardinality(v_expired) > 0 THEN
            WITH gone AS (
                DELETE FROM corral_jobs e WHERE e.id = ANY(v_expired) RETURNING e.*
            )
            INSERT INTO corral_jobs_finished (id, kind, queue, payload, priority, region, state,
                run_at, expires_at, attempt, max_attempts, dedupe_key, worker_id, last_error,
                last_error_reason, enqueued_at, started_at)
            SELECT g.id, g.kind, g.queue, g.payload, g.priority, g.region, 'expired',
                   g.run_at, g.expires_at, g.attempt, g.max_attempts, g.dedupe_key, g.worker_id,
                   g.last_error, g.last_error_reason, g.enqueued_at, g.started_at
              FROM gone g;
        END IF;
        CONTINUE WHEN cardinality(v_ids) = 0;
        RETURN QUERY
        WITH claimed AS (
            UPDATE corral_jobs u
               SET state = 'running', attempt = u.attempt + 1, lease_token = v_token,
                   lease_expires_at = v_lease_until, worker_id = p_worker_id, started_at = now()
             WHERE u.id = ANY(v_ids)
            RETURNING u.id, u.kind, u.queue, u.payload, u.priority, u.region, u.attempt,
                      u.max_attempts, u.lease_token, u.lease_expires_at, u.enqueued_at, u.run_at
        )
        SELECT * FROM claimed ORDER BY claimed.priority DESC, claimed.id;
        GET DIAGNOSTICS v_got = ROW_COUNT;
        v_left := v_left - v_got;
        EXIT WHEN v_left <= 0;
    END LOOP;
END
$$;

-- Finish jobs the caller holds (its worker id and the lease token both
-- match), keeping each job's result (p_results NULL, or a NULL element: no
-- result); move them to the finished table in the same statement. The
-- credential is checked once for the batch. Returns the ids rejected (the
-- lease was lost, or is not the caller's).
CREATE FUNCTION corral_complete_v3(
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
    PERFORM corral_relax_ack_v1();
    -- The holder check is its own primary-key pass, not a condition of the
    -- DELETE below: there it would shrink the planner's row estimate and
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
    WITH done AS (
        DELETE FROM corral_jobs j
         USING unnest(v_ids, v_tokens, v_results) AS d(id, token, result)
         WHERE j.id = ANY(v_ids) AND j.id = d.id AND j.lease_token = d.token
        RETURNING j.*, d.result AS new_result
    ), moved AS (
        INSERT INTO corral_jobs_finished (id, kind, queue, payload, priority, region, state,
            run_at, expires_at, attempt, max_attempts, dedupe_key, worker_id, last_error,
            last_error_reason, enqueued_at, started_at, result)
        SELECT d.id, d.kind, d.queue, d.payload, d.priority, d.region, 'completed',
               d.run_at, d.expires_at, d.attempt, d.max_attempts, d.dedupe_key, d.worker_id,
               d.last_error, d.last_error_reason, d.enqueued_at, d.started_at, d.new_result
          FROM done d
         WHERE NOT EXISTS (SELECT 1 FROM corral_queues q
                            WHERE q.name = d.queue AND NOT q.keep_completed)
    )
    SELECT coalesce(array_agg(x.id), '{}') INTO v_rejected
      FROM unnest(p_ids) AS x(id)
     WHERE x.id NOT IN (SELECT d.id FROM done d);
    RETURN v_rejected;
END
$$;

-- The (id, token) pairs of p_ids/p_tokens that p_worker_id holds right now,
-- after checking its credential (CR401; CR410 for a removed worker). The
-- lease token fences the rest: a job reaped and claimed again meanwhile has
-- another token.
CREATE FUNCTION corral_held_by_v1(
    p_worker_id bigint, p_credential text, p_ids bigint[], p_tokens bigint[],
    OUT held_ids bigint[], OUT held_tokens bigint[]
)
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF corral_caller_state_v1(p_worker_id, p_credential) = 'removed' THEN
        RAISE EXCEPTION 'worker % was removed from the fleet', p_worker_id
            USING ERRCODE = 'CR410';
    END IF;
    SELECT coalesce(array_agg(j.id), '{}'), coalesce(array_agg(j.lease_token), '{}')
      INTO held_ids, held_tokens
      FROM corral_jobs j JOIN unnest(p_ids, p_tokens) AS d(id, token)
        ON j.id = d.id AND j.lease_token = d.token
     WHERE j.id = ANY(p_ids) AND j.worker_id = p_worker_id;
END
$$;

-- corral_fail_v1 for the jobs the caller holds. Returns the ids rejected.
CREATE FUNCTION corral_fail_v2(
    p_worker_id bigint, p_credential text, p_ids bigint[], p_tokens bigint[], p_errors text[],
    p_reasons text[], p_retry boolean[]
) RETURNS bigint[]
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_held record;
    v_errors text[];
    v_reasons text[];
    v_retry boolean[];
    v_rejected bigint[];
BEGIN
    SELECT * INTO v_held FROM corral_held_by_v1(p_worker_id, p_credential, p_ids, p_tokens);
    SELECT coalesce(array_agg(f.error ORDER BY h.ord), '{}'),
           coalesce(array_agg(f.reason ORDER BY h.ord), '{}'),
           coalesce(array_agg(f.retry ORDER BY h.ord), '{}')
      INTO v_errors, v_reasons, v_retry
      FROM unnest(v_held.held_ids) WITH ORDINALITY AS h(id, ord)
      JOIN unnest(p_ids, p_errors, p_reasons, p_retry) AS f(id, error, reason, retry)
        ON f.id = h.id;
    v_rejected := corral_fail_v1(v_held.held_ids, v_held.held_tokens, v_errors, v_reasons,
                                 v_retry);
    RETURN v_rejected
        || ARRAY(SELECT x.id FROM unnest(p_ids) AS x(id) WHERE x.id <> ALL (v_held.held_ids));
END
$$;

-- corral_release_v1 for the jobs the caller holds. Returns the ids rejected.
CREATE FUNCTION corral_release_v2(
    p_worker_id bigint, p_credential text, p_ids bigint[], p_tokens bigint[]
) RETURNS bigint[]
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_held record;
BEGIN
    SELECT * INTO v_held FROM corral_held_by_v1(p_worker_id, p_credential, p_ids, p_tokens);
    RETURN corral_release_v1(v_held.held_ids, v_held.held_tokens)
        || ARRAY(SELECT x.id FROM unnest(p_ids) AS x(id) WHERE x.id <> ALL (v_held.held_ids));
END
$$;

-- corral_heartbeat_v1 with the lease capped at 1 s to 1 h and the
-- credential renewed for a day (an expired one is refused: CR401).
CREATE FUNCTION corral_heartbeat_v2(
    p_worker_id bigint, p_credential text, p_in_flight integer, p_lease_s double precision,
    p_held bigint[]
) RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_state text;
BEGIN
    PERFORM corral_relax_ack_v1();
    UPDATE corral_workers w
       SET last_heartbeat = now(), in_flight = greatest(p_in_flight, 0),
           credential_expires_at = CASE WHEN w.state = 'removed' THEN w.credential_expires_at
                                        ELSE now() + interval '1 day' END
     WHERE w.id = p_worker_id
       AND w.credential_hash = encode(sha256(convert_to(p_credential, 'UTF8')), 'hex')
       AND (w.credential_expires_at IS NULL OR w.credential_expires_at > now())
    RETURNING w.state INTO v_state;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'worker % is not enrolled, or its credential is wrong or expired',
            p_worker_id USING ERRCODE = 'CR401';
    END IF;
    IF v_state <> 'removed' THEN
        -- Only the jobs the worker names as held (NULL: every one leased to
        -- it): a claim that committed as its connection broke, which it never
        -- saw, lapses and is retried. SKIP LOCKED: a row locked now is being
        -- completed, failed or released on its other connection.
        UPDATE corral_jobs j
           SET lease_expires_at = now() + make_interval(
                   secs => least(greatest(coalesce(p_lease_s, 60), 1), 3600))
         WHERE j.id = ANY(ARRAY(SELECT h.id FROM corral_jobs h
                                 WHERE h.state = 'running' AND h.worker_id = p_worker_id
                                   AND (p_held IS NULL OR h.id = ANY(p_held))
                                   FOR UPDATE SKIP LOCKED));
    END IF;
    RETURN v_state;
END
$$;

-- A worker drains itself (see corral_drain_self_v1 in 0003), now with an
-- expired credential refused too.
CREATE OR REPLACE FUNCTION corral_drain_self_v1(p_worker_id bigint, p_credential text) RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_state text;
    v_by text;
BEGIN
    PERFORM corral_caller_state_v1(p_worker_id, p_credential);
    SELECT w.state, w.drain_requested_by INTO v_state, v_by FROM corral_workers w
     WHERE w.id = p_worker_id
       FOR UPDATE;
    IF v_state = 'removed' THEN
        RAISE EXCEPTION 'worker % was removed from the fleet', p_worker_id
            USING ERRCODE = 'CR410';
    END IF;
    IF v_state = 'active' THEN
        UPDATE corral_workers w
           SET state = 'draining', drain_requested_at = now(), drain_requested_by = 'self'
         WHERE w.id = p_worker_id;
        v_state := 'draining';
    ELSIF v_by = 'scaler' THEN
        -- The pod is going: the scaler may no longer cancel this drain.
        UPDATE corral_workers w SET drain_requested_by = 'self' WHERE w.id = p_worker_id;
    END IF;
    RETURN v_state;
END
$$;

-- The worker reports it holds nothing after a drain: a draining row becomes
-- drained. Returns the row's state afterwards (anything but drained: it was
-- not draining).
CREATE FUNCTION corral_mark_drained_v1(p_worker_id bigint, p_credential text) RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_state text;
BEGIN
    v_state := corral_caller_state_v1(p_worker_id, p_credential);
    IF v_state IN ('draining', 'drained') THEN
        UPDATE corral_workers w
           SET state = 'drained', drained_at = now(), in_flight = 0
         WHERE w.id = p_worker_id
        RETURNING w.state INTO v_state;
    END IF;
    RETURN v_state;
END
$$;

-- The reaper is fleet upkeep every worker may run: it only sends lapsed
-- leases through the retry path.
ALTER FUNCTION corral_reap_v1(integer) SECURITY DEFINER;
ALTER FUNCTION corral_reap_v1(integer) SET search_path = pg_catalog, public, pg_temp;

-- A worker's retention batch: corral_purge_finished_v1 for an enrolled
-- caller, never younger than a day and at most 10,000 rows per call.
-- Shorter retention is an admin's (`corral jobs purge`).
CREATE FUNCTION corral_purge_finished_v2(
    p_worker_id bigint, p_credential text, p_older_than_s double precision, p_limit integer
) RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF corral_caller_state_v1(p_worker_id, p_credential) = 'removed' THEN
        RAISE EXCEPTION 'worker % was removed from the fleet', p_worker_id
            USING ERRCODE = 'CR410';
    END IF;
    RETURN corral_purge_finished_v1(greatest(p_older_than_s, 86400),
                                    least(greatest(p_limit, 1), 10000));
END
$$;
