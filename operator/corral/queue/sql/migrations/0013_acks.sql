-- 0013: the claim and the completion in one pass each (issue 16: a
-- worker's acknowledgements cost the server a tenth less per job).
--
-- * corral_claim_v5: corral_claim_v4's rows, without its second pass.
--   claim_v4 collected corral_claim_v2's rows into an array and read each
--   job's schedule occurrence in a statement after it; claim_v5 is claim_v2
--   with the occurrence read in the claim's UPDATE, whose snapshot is taken
--   after the statement that chose the jobs (the ordering claim_v4 needs).
-- * corral_complete_v5: corral_complete_v4 checked that the caller holds
--   every job in a primary-key pass of its own before the DELETE (about 7%
--   of the server's time in a drain). complete_v5 deletes first, in a
--   subtransaction, and checks the deleted rows' holder: when one is not the
--   caller's (its lease token guessed or stale), the subtransaction is
--   rolled back, nothing of it stays (no finished row, no forwarded result),
--   and the batch goes through complete_v3's per-id pass, as before.
--
-- The _v4 functions stay for workers of the previous release.

-- Claim up to p_batch ready jobs (corral_claim_v2's rules: the caller's
-- credential, its enrolled queues and region, the pause switches, batch
-- capped at 1,000 and the lease at 1 s to 1 h), each with the schedule
-- occurrence it was enqueued for (NULL for any other job).
CREATE FUNCTION corral_claim_v5(
    p_worker_id bigint, p_credential text, p_queues text[], p_batch integer,
    p_lease_s double precision
) RETURNS SETOF corral_claimed_v1
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
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
        -- The occurrences are read in the UPDATE's own snapshot, taken after
        -- the statement above chose the jobs: a job and its occurrence are
        -- committed together, so a job it chose has its occurrence visible here.
        RETURN QUERY
        WITH claimed AS (
            UPDATE corral_jobs u
               SET state = 'running', attempt = u.attempt + 1, lease_token = v_token,
                   lease_expires_at = v_lease_until, worker_id = p_worker_id, started_at = now()
             WHERE u.id = ANY(v_ids)
            RETURNING u.id, u.kind, u.queue, u.payload, u.priority, u.region, u.attempt,
                      u.max_attempts, u.lease_token, u.lease_expires_at, u.enqueued_at, u.run_at
        )
        SELECT c.id, c.kind, c.queue, c.payload, c.priority, c.region, c.attempt,
               c.max_attempts, c.lease_token, c.lease_expires_at, c.enqueued_at, c.run_at,
               (SELECT o.scheduled_for FROM corral_schedule_occurrences o WHERE o.job_id = c.id)
          FROM claimed c
         ORDER BY c.priority DESC, c.id;
        GET DIAGNOSTICS v_got = ROW_COUNT;
        v_left := v_left - v_got;
        EXIT WHEN v_left <= 0;
    END LOOP;
END
$$;

-- Finish jobs the caller holds (corral_complete_v4's answer: the ids
-- rejected, because the lease was lost or is not the caller's). CR401 for
-- a wrong or expired credential or a removed worker.
CREATE FUNCTION corral_complete_v5(
    p_worker_id bigint, p_credential text, p_ids bigint[], p_tokens bigint[], p_results jsonb[]
) RETURNS bigint[]
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_rejected bigint[];
    v_forwarded text[];
    v_foreign boolean;
BEGIN
    IF corral_caller_state_v1(p_worker_id, p_credential) = 'removed' THEN
        RAISE EXCEPTION 'worker % was removed from the fleet', p_worker_id
            USING ERRCODE = 'CR401';
    END IF;
    PERFORM corral_relax_ack_v1();
    -- A subtransaction: one per batch, so a few microseconds per batch
    -- against the per-job pass it saves.
    BEGIN
        -- corral_complete_v2's statement, and whether a job deleted was
        -- someone else's.
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
               (SELECT array_agg(DISTINCT f.queue) FROM forwarded f),
               (SELECT bool_or(d.worker_id IS DISTINCT FROM p_worker_id) FROM done d)
          INTO v_rejected, v_forwarded, v_foreign
          FROM unnest(p_ids) AS x(id)
         WHERE x.id NOT IN (SELECT d.id FROM done d);
        IF v_foreign THEN
            -- Caught below: rolls back everything this block did.
            RAISE EXCEPTION 'a job of the batch is held by another worker'
                USING ERRCODE = 'CR499';
        END IF;
    EXCEPTION WHEN SQLSTATE 'CR499' THEN
        RETURN corral_complete_v3(p_worker_id, p_credential, p_ids, p_tokens, p_results);
    END;
    PERFORM pg_notify('corral_jobs', w.queue) FROM unnest(v_forwarded) AS w(queue);
    RETURN v_rejected;
END
$$;
