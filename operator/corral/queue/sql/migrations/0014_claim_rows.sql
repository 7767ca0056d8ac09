-- 0014: corral_claim_v5 reaches the rows it claims by their addresses
-- (issue 16). 0013's claim_v5 locked the jobs it chose, collected their ids,
-- and updated `WHERE id = ANY(ids)`: a primary-key probe a job. Here the
-- locking statement collects the rows' ctids and the UPDATE is a TID scan;
-- the rows are locked by this transaction from the first statement on, so
-- their addresses cannot change in between. Same signature, same rules,
-- same rows returned: workers of 0013 call it unchanged. Measured on the
-- server (one database a variant, batches of 250 in turn,
-- pg_stat_user_functions): about 1 us a job less in claim + complete
-- (30.81 -> 29.84 and 28.56 -> 27.36 us).

-- Claim up to p_batch ready jobs: corral_claim_v5 of 0013, whose comments hold.
CREATE OR REPLACE FUNCTION corral_claim_v5(
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
    v_rows tid[];
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
        -- The rows' own addresses: the UPDATE below reaches them without a
        -- primary-key probe each. A row this transaction has locked keeps its
        -- address until the transaction ends (nobody else can update or
        -- delete it, and vacuum never moves a live tuple).
        SELECT coalesce(array_agg(c.ctid) FILTER (WHERE c.expires_at IS NULL OR c.expires_at > now()), '{}'),
               coalesce(array_agg(c.id) FILTER (WHERE c.expires_at <= now()), '{}')
          INTO v_rows, v_expired
          FROM (SELECT c.ctid, c.id, c.expires_at FROM corral_jobs c
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
        CONTINUE WHEN cardinality(v_rows) = 0;
        -- The occurrences are read in the UPDATE's own snapshot, taken after
        -- the statement above chose the jobs: a job and its occurrence are
        -- committed together, so a job it chose has its occurrence visible here.
        RETURN QUERY
        WITH claimed AS (
            UPDATE corral_jobs u
               SET state = 'running', attempt = u.attempt + 1, lease_token = v_token,
                   lease_expires_at = v_lease_until, worker_id = p_worker_id, started_at = now()
             WHERE u.ctid = ANY(v_rows)
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
