-- 0018: expired jobs no longer hide the live jobs behind them from a claim.
--
-- corral_claim_v5 (0014) read each lane with `LIMIT v_left ... FOR UPDATE
-- SKIP LOCKED`; the expired rows it met took places in that limit, were
-- moved to the history as 'expired', and the claim went on to the next lane
-- without reading this one again. A worker asking for 2 jobs in front of 60
-- expired ones got none, took it for an empty queue (a short claim shrinks
-- its claim size) and slept until its next poll: about 2 expired jobs
-- cleared a second a worker, 29 s before 5 live jobs behind 60 expired ones
-- ran.
--
-- Same signature and rows, body replaced in place (workers of every release
-- that call _v5 get it). A read of a lane that met expired rows reads the
-- lane again, wider by the expired rows met so far in it (at most 1,000
-- more: the window grows about twofold a read, so a long run of expired
-- rows costs a few reads, not one a batch), until a read meets none, the
-- lane runs out, the batch is full, or the call has moved 5,000 expired
-- rows: then it reads no lane again (one call stays bounded: 5,000 expired
-- rows and a batch, plus what each lane's first read meets, as before) and
-- the next claim goes on where it stopped. A wider read locks live rows
-- past the batch that it does not claim; they stay locked (other claims
-- skip them) only until this claim's transaction ends, and only where
-- expired rows were met.
--
-- The hot path is unchanged: a read that meets no expired row is the one
-- statement of 0014, then the UPDATE, then the next lane, as before; the
-- only additions on that path are a few integer comparisons in plpgsql.

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
    -- Expired rows moved by this call, and by the reads of the current lane.
    v_swept integer := 0;
    v_lane_swept integer;
    v_window integer;
    v_read integer;
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
        v_lane_swept := 0;
        LOOP
            IF v_lane_swept = 0 THEN
                -- The lane's first read: 0014's statement. The rows' own
                -- addresses: the UPDATE below reaches them without a
                -- primary-key probe each. A row this transaction has locked
                -- keeps its address until the transaction ends (nobody else
                -- can update or delete it, and vacuum never moves a live tuple).
                v_window := v_left;
                SELECT coalesce(array_agg(c.ctid) FILTER (WHERE c.expires_at IS NULL OR c.expires_at > now()), '{}'),
                       coalesce(array_agg(c.id) FILTER (WHERE c.expires_at <= now()), '{}')
                  INTO v_rows, v_expired
                  FROM (SELECT c.ctid, c.id, c.expires_at FROM corral_jobs c
                         WHERE c.state = 'pending' AND c.queue = v_lane.queue
                           AND c.region = v_lane.region
                         ORDER BY c.priority DESC, c.id
                         LIMIT v_left
                           FOR UPDATE SKIP LOCKED) c;
                v_read := cardinality(v_rows) + cardinality(v_expired);
            ELSE
                -- A read again after expired rows: wider by the expired rows
                -- met so far (the head of the lane may hold more of them), by
                -- at most 1,000 and what is left of the call's 5,000; the
                -- batch takes the first v_left live rows, in lane order.
                v_window := v_left + least(v_lane_swept, 1000, 5000 - v_swept);
                SELECT coalesce(array_agg(c.ctid ORDER BY c.priority DESC, c.id)
                                    FILTER (WHERE c.expires_at IS NULL OR c.expires_at > now()), '{}'),
                       coalesce(array_agg(c.id) FILTER (WHERE c.expires_at <= now()), '{}')
                  INTO v_rows, v_expired
                  FROM (SELECT c.ctid, c.id, c.priority, c.expires_at FROM corral_jobs c
                         WHERE c.state = 'pending' AND c.queue = v_lane.queue
                           AND c.region = v_lane.region
                         ORDER BY c.priority DESC, c.id
                         LIMIT v_window
                           FOR UPDATE SKIP LOCKED) c;
                v_read := cardinality(v_rows) + cardinality(v_expired);
                v_rows := v_rows[1:v_left];
            END IF;
            IF cardinality(v_expired) > 0 THEN
                WITH gone AS (
                    DELETE FROM corral_jobs e WHERE e.id = ANY(v_expired) RETURNING e.*
                )
                INSERT INTO corral_jobs_finished (id, kind, queue, payload, priority, region,
                    state, run_at, expires_at, attempt, max_attempts, dedupe_key, worker_id,
                    last_error, last_error_reason, enqueued_at, started_at)
                SELECT g.id, g.kind, g.queue, g.payload, g.priority, g.region, 'expired',
                       g.run_at, g.expires_at, g.attempt, g.max_attempts, g.dedupe_key,
                       g.worker_id, g.last_error, g.last_error_reason, g.enqueued_at,
                       g.started_at
                  FROM gone g;
                v_lane_swept := v_lane_swept + cardinality(v_expired);
                v_swept := v_swept + cardinality(v_expired);
            END IF;
            IF cardinality(v_rows) > 0 THEN
                -- The occurrences are read in the UPDATE's own snapshot, taken
                -- after the statement above chose the jobs: a job and its
                -- occurrence are committed together, so a job it chose has its
                -- occurrence visible here.
                RETURN QUERY
                WITH claimed AS (
                    UPDATE corral_jobs u
                       SET state = 'running', attempt = u.attempt + 1, lease_token = v_token,
                           lease_expires_at = v_lease_until, worker_id = p_worker_id,
                           started_at = now()
                     WHERE u.ctid = ANY(v_rows)
                    RETURNING u.id, u.kind, u.queue, u.payload, u.priority, u.region, u.attempt,
                              u.max_attempts, u.lease_token, u.lease_expires_at, u.enqueued_at,
                              u.run_at
                )
                SELECT c.id, c.kind, c.queue, c.payload, c.priority, c.region, c.attempt,
                       c.max_attempts, c.lease_token, c.lease_expires_at, c.enqueued_at, c.run_at,
                       (SELECT o.scheduled_for FROM corral_schedule_occurrences o
                         WHERE o.job_id = c.id)
                  FROM claimed c
                 ORDER BY c.priority DESC, c.id;
                GET DIAGNOSTICS v_got = ROW_COUNT;
                v_left := v_left - v_got;
            END IF;
            -- Read this lane again only when expired rows took places in a
            -- full read, the batch has room, and the call's sweep is not spent.
            EXIT WHEN cardinality(v_expired) = 0 OR v_read < v_window OR v_left <= 0
                      OR v_swept >= 5000;
        END LOOP;
        EXIT WHEN v_left <= 0;
    END LOOP;
END
$$;
