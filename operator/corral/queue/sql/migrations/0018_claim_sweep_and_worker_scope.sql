-- 0018: functions workers call, bodies replaced in place (same signatures
-- and rows: workers of every release call them unchanged), in three parts:
--   * corral_claim_v5: expired jobs no longer hide the live jobs behind them;
--   * the worker's schedule functions: only schedules for its own region or
--     any (corral_worker_declare/_due/_lock/_fire_schedule_v1);
--   * corral_reap_v1: at most 1,000 jobs a call.
--
-- ---------------------------------------------------------------------------
-- Expired jobs no longer hide the live jobs behind them from a claim.
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

-- ---------------------------------------------------------------------------
-- A worker's schedules stay in its region.
--
-- corral_worker_declare_schedule_v1 (0010) checked the schedule's queue but
-- not its region: a worker enrolled in region eu could declare a schedule on
-- a queue it serves with region us, and its firing pass (0017) enqueued jobs
-- that only workers of us claim. docs/security.md promises that a worker
-- reaches only its enrolled queues and region. Same signatures and rows,
-- bodies replaced in place (workers of every release call them): a worker
-- declares, sees, locks and fires only the schedules on its queues whose
-- region is its own or '' (any), and cannot take over the name of one in
-- another region. The priority stays free within the table's range, as it is
-- for every enqueue: it orders jobs only within the lanes of the queues the
-- worker serves (a worker has no other enqueue of its own; a forwarded
-- result keeps the priority its enqueuer gave the job).
-- An admin's schedule for another region on a queue the worker serves is
-- fired by that region's workers, or by the operator.

CREATE OR REPLACE FUNCTION corral_worker_due_schedules_v1(
    p_worker_id bigint, p_credential text, p_limit integer, p_lead_s double precision
) RETURNS TABLE (
    name text, kind text, every_s double precision, cron text, timezone text, queue text,
    start_at timestamptz, end_at timestamptz, catch_up text, overlap text,
    jitter_s double precision, next_at timestamptz, last_occurrence timestamptz,
    created_at timestamptz, db_now timestamptz
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_served text[];
    v_region text;
BEGIN
    v_served := corral_worker_queues_v1(p_worker_id, p_credential);
    SELECT w.region INTO v_region FROM corral_workers w WHERE w.id = p_worker_id;
    RETURN QUERY
    SELECT s.name, s.kind, s.every_s, s.cron, s.timezone, s.queue, s.start_at, s.end_at,
           s.catch_up, s.overlap, s.jitter_s, s.next_at, s.last_occurrence, s.created_at,
           now()
      FROM corral_schedules s
     WHERE NOT s.paused
       AND s.queue = ANY(v_served)
       AND s.region IN ('', v_region)
       AND s.next_at <= now() + make_interval(secs => least(greatest(coalesce(p_lead_s, 0), 0), 60))
     ORDER BY s.next_at
     LIMIT least(greatest(coalesce(p_limit, 100), 1), 1000)
       FOR UPDATE OF s SKIP LOCKED;
END
$$;

CREATE OR REPLACE FUNCTION corral_worker_lock_schedule_v1(
    p_worker_id bigint, p_credential text, p_name text
) RETURNS TABLE (
    name text, kind text, payload jsonb, every_s double precision, cron text, timezone text,
    queue text, priority smallint, region text, max_attempts integer, start_at timestamptz,
    end_at timestamptz, catch_up text, overlap text, jitter_s double precision,
    created_at timestamptz, db_now timestamptz
)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_served text[];
    v_region text;
BEGIN
    v_served := corral_worker_queues_v1(p_worker_id, p_credential);
    SELECT w.region INTO v_region FROM corral_workers w WHERE w.id = p_worker_id;
    -- A schedule on another queue or for another region reads as absent: the
    -- declare that follows refuses to take its name over, without showing
    -- its payload.
    RETURN QUERY
    SELECT s.name, s.kind, s.payload, s.every_s, s.cron, s.timezone, s.queue, s.priority,
           s.region, s.max_attempts, s.start_at, s.end_at, s.catch_up, s.overlap, s.jitter_s,
           s.created_at, now()
      FROM corral_schedules s
     WHERE s.name = p_name AND s.queue = ANY(v_served) AND s.region IN ('', v_region)
       FOR UPDATE;
END
$$;

CREATE OR REPLACE FUNCTION corral_worker_declare_schedule_v1(
    p_worker_id bigint, p_credential text, p_name text, p_kind text, p_payload jsonb,
    p_every_s double precision, p_cron text, p_timezone text, p_queue text, p_priority integer,
    p_region text, p_max_attempts integer, p_start_at timestamptz, p_end_at timestamptz,
    p_catch_up text, p_overlap text, p_jitter_s double precision, p_next_at timestamptz
) RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_served text[];
    v_region text;
BEGIN
    v_served := corral_worker_queues_v1(p_worker_id, p_credential);
    SELECT w.region INTO v_region FROM corral_workers w WHERE w.id = p_worker_id;
    IF NOT p_queue = ANY(v_served) THEN
        RAISE EXCEPTION 'worker % may not declare schedule % on queue %: it serves only %',
            p_worker_id, p_name, p_queue, v_served USING ERRCODE = '42501';
    END IF;
    IF p_region IS NULL OR p_region NOT IN ('', v_region) THEN
        RAISE EXCEPTION 'worker % may not declare schedule % in region %: it is enrolled in '
                        'region %', p_worker_id, p_name, coalesce(p_region, 'NULL'), v_region
            USING ERRCODE = '42501',
                  HINT = format('a worker''s schedule runs in its own region (%s) or in any '
                                '(no region); an admin creates one for another region: '
                                'corral schedules create ... --region', v_region);
    END IF;
    INSERT INTO corral_schedules AS s (name, kind, payload, every_s, cron, timezone, queue,
                                       priority, region, max_attempts, start_at, end_at,
                                       catch_up, overlap, jitter_s, next_at)
    VALUES (p_name, p_kind, p_payload, p_every_s, p_cron, p_timezone, p_queue, p_priority,
            p_region, p_max_attempts, p_start_at, p_end_at, p_catch_up, p_overlap, p_jitter_s,
            p_next_at)
    ON CONFLICT (name) DO UPDATE
       SET kind = EXCLUDED.kind, payload = EXCLUDED.payload, every_s = EXCLUDED.every_s,
           cron = EXCLUDED.cron, timezone = EXCLUDED.timezone, queue = EXCLUDED.queue,
           priority = EXCLUDED.priority, region = EXCLUDED.region,
           max_attempts = EXCLUDED.max_attempts, start_at = EXCLUDED.start_at,
           end_at = EXCLUDED.end_at, catch_up = EXCLUDED.catch_up, overlap = EXCLUDED.overlap,
           jitter_s = EXCLUDED.jitter_s, next_at = EXCLUDED.next_at, updated_at = now()
     WHERE s.queue = ANY(v_served) AND s.region IN ('', v_region);
    IF NOT FOUND THEN
        -- The name is taken by a schedule on a queue this worker does not
        -- serve, or for another region.
        RAISE EXCEPTION 'worker % may not change schedule %: it is on a queue it does not '
                        'serve, or in another region than the worker''s (%)',
            p_worker_id, p_name, v_region USING ERRCODE = '42501';
    END IF;
END
$$;

-- 0017's body, and the schedule's region must be the worker's or any.
CREATE OR REPLACE FUNCTION corral_worker_fire_schedule_v1(
    p_worker_id bigint, p_credential text, p_name text, p_occurrences timestamptz[],
    p_run_at timestamptz[], p_next_at timestamptz
) RETURNS bigint[]
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_served text[];
    v_region text;
    s corral_schedules%ROWTYPE;
    v_count integer := coalesce(array_length(p_occurrences, 1), 0);
    v_latest timestamptz;
BEGIN
    v_served := corral_worker_queues_v1(p_worker_id, p_credential);
    SELECT w.region INTO v_region FROM corral_workers w WHERE w.id = p_worker_id;
    IF v_count > 1000 THEN
        RAISE EXCEPTION 'at most 1000 occurrences per firing (got %)', v_count
            USING ERRCODE = '22023';
    END IF;
    SELECT * INTO s FROM corral_schedules c WHERE c.name = p_name FOR UPDATE;
    IF NOT FOUND THEN
        RETURN '{}';
    END IF;
    IF NOT s.queue = ANY(v_served) THEN
        RAISE EXCEPTION 'worker % may not fire schedule %: it is on a queue it does not serve',
            p_worker_id, p_name USING ERRCODE = '42501';
    END IF;
    IF s.region NOT IN ('', v_region) THEN
        RAISE EXCEPTION 'worker % may not fire schedule %: its jobs are for region %, and the '
                        'worker is enrolled in region %', p_worker_id, p_name, s.region, v_region
            USING ERRCODE = '42501';
    END IF;
    IF s.paused THEN
        RAISE EXCEPTION 'schedule % is paused: nothing of it fires until it is resumed', p_name
            USING ERRCODE = '22023';
    END IF;
    -- A worker fires what is due, from the stored next occurrence on (the
    -- firing pass's lead is capped at a minute too).
    IF v_count > 0 AND (
        s.next_at IS NULL
        OR EXISTS (SELECT 1 FROM unnest(p_occurrences) o
                    WHERE o IS NULL OR o < s.next_at OR o > now() + interval '60 seconds')
    ) THEN
        RAISE EXCEPTION 'a worker may fire only occurrences of schedule % due within a minute, '
                        'from its next one (%) on', p_name, s.next_at USING ERRCODE = '22023';
    END IF;
    IF p_run_at IS NOT NULL AND EXISTS (
        SELECT 1 FROM unnest(p_occurrences, p_run_at) AS f(o, r)
         WHERE r IS NOT NULL
           AND (o IS NULL OR r < o
                OR r > o + make_interval(secs => s.jitter_s) + interval '1 millisecond'))
    THEN
        RAISE EXCEPTION 'a job of schedule % may run only within its jitter (% s) of its '
                        'occurrence', p_name, s.jitter_s USING ERRCODE = '22023';
    END IF;
    SELECT max(o) INTO v_latest FROM unnest(p_occurrences) o;
    IF p_next_at IS NULL AND s.end_at IS NULL THEN
        RAISE EXCEPTION 'schedule % has no end_at: its next occurrence cannot be none', p_name
            USING ERRCODE = '22023';
    END IF;
    IF p_next_at IS NOT NULL AND (p_next_at < s.next_at OR p_next_at <= v_latest) THEN
        RAISE EXCEPTION 'the next occurrence of schedule % must follow the ones fired', p_name
            USING ERRCODE = '22023';
    END IF;
    RETURN corral_fire_schedule_v1(p_name, p_occurrences, p_run_at, p_next_at);
END
$$;

-- ---------------------------------------------------------------------------
-- The reaper a worker may call does at most 1,000 jobs a call.
--
-- corral_reap_v1 (0010) is granted to workers and checks no credential: it
-- takes no worker id (every release's worker calls it so), and what it does
-- is what every worker's reaper does, one process at a time (its advisory
-- lock): jobs whose lease already lapsed go back through the retry path.
-- But it took any p_limit, and NULL meant no limit: one call could lock and
-- fail every lapsed job at once. Same signature and answer, body replaced in
-- place: the limit is capped at 1,000 (every caller of this release and the
-- last asks for the default, 1,000) and a negative one reaps nothing. A
-- wrapper that checks a credential would need the worker to call it, and
-- the old function would stay granted for the workers of earlier releases;
-- the cap bounds what either may do.
CREATE OR REPLACE FUNCTION corral_reap_v1(p_limit integer DEFAULT 1000) RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_ids bigint[];
    v_tokens bigint[];
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('corral_reaper')) THEN
        RETURN NULL;
    END IF;
    WITH lapsed AS (
        SELECT r.id, r.lease_token, r.worker_id, r.attempt FROM corral_jobs r
         WHERE r.state = 'running' AND r.lease_expires_at < now()
         ORDER BY r.lease_expires_at
         LIMIT least(greatest(coalesce(p_limit, 1000), 0), 1000)
           FOR UPDATE SKIP LOCKED
    ), noted AS (
        INSERT INTO corral_job_interruptions (job_id, worker_id, attempt, reason)
        SELECT l.id, l.worker_id, l.attempt, 'lease_expired' FROM lapsed l
    )
    SELECT array_agg(l.id), array_agg(l.lease_token) INTO v_ids, v_tokens FROM lapsed l;
    IF v_ids IS NULL THEN
        RETURN 0;
    END IF;
    PERFORM corral_fail_v1(
        v_ids, v_tokens,
        array_fill('lease expired: the worker stopped heartbeating before finishing'::text,
                   ARRAY[cardinality(v_ids)]),
        array_fill('lease_expired'::text, ARRAY[cardinality(v_ids)]),
        array_fill(true, ARRAY[cardinality(v_ids)]));
    RETURN cardinality(v_ids);
END
$$;
