-- 0007: recurring schedules (every N seconds, or cron in a timezone).
--
-- * corral_schedules: one row per schedule, next_at the next occurrence.
-- * corral_schedule_occurrences: the ledger; its key (schedule, occurrence)
--   makes each occurrence fire once, whatever fires it (workers' firing
--   passes, any number at once, restarted at any time).
-- * corral_fire_schedule_v1, corral_due_schedules_v1,
--   corral_run_schedule_now_v1 (admin), and the worker's wrappers
--   corral_worker_due_schedules_v1 / corral_worker_fire_schedule_v1, and
--   corral_worker_lock_schedule_v1 / corral_worker_declare_schedule_v1 for
--   the schedules a worker's handlers declare.
-- * corral_claim_v3: claim_v2 plus the job's scheduled_for.
-- * corral_purge_finished_v1 also deletes ledger rows whose jobs are gone.

-- ---------------------------------------------------------------------------
-- Recurring schedules (0007): a schedule enqueues a job per occurrence, and
-- the ledger's key (schedule, occurrence) makes each occurrence happen once,
-- however many workers fire it and however often they restart.
-- ---------------------------------------------------------------------------

CREATE TABLE corral_schedules (
    name text PRIMARY KEY,
    kind text NOT NULL,
    payload jsonb NOT NULL DEFAULT '{}'::jsonb,
    every_s double precision,
    cron text,
    timezone text NOT NULL DEFAULT 'UTC',
    queue text NOT NULL,
    priority smallint NOT NULL DEFAULT 0,
    region text NOT NULL DEFAULT '',
    max_attempts integer,
    start_at timestamptz,
    end_at timestamptz,
    catch_up text NOT NULL DEFAULT 'one',
    overlap text NOT NULL DEFAULT 'skip',
    jitter_s double precision NOT NULL DEFAULT 0,
    paused boolean NOT NULL DEFAULT false,
    -- The next occurrence to consider (NULL: the schedule is over).
    next_at timestamptz,
    last_occurrence timestamptz,
    last_job_id bigint,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT schedule_name_not_empty CHECK (name <> ''),
    CONSTRAINT schedule_kind_not_empty CHECK (kind <> ''),
    CONSTRAINT schedule_queue_not_empty CHECK (queue <> '' AND queue <> '*'),
    CONSTRAINT schedule_every_or_cron CHECK ((every_s IS NULL) <> (cron IS NULL)),
    CONSTRAINT schedule_every_at_least_1s CHECK (every_s IS NULL OR every_s >= 1),
    CONSTRAINT schedule_end_after_start CHECK (
        start_at IS NULL OR end_at IS NULL OR end_at > start_at
    ),
    CONSTRAINT schedule_catch_up_known CHECK (catch_up IN ('none', 'one', 'all')),
    CONSTRAINT schedule_overlap_known CHECK (overlap IN ('allow', 'skip', 'queue')),
    CONSTRAINT schedule_priority_in_range CHECK (priority BETWEEN -1000 AND 1000),
    CONSTRAINT schedule_max_attempts_positive CHECK (max_attempts IS NULL OR max_attempts >= 1),
    CONSTRAINT schedule_jitter_not_negative CHECK (jitter_s >= 0)
);
COMMENT ON TABLE corral_schedules IS
    'Recurring jobs (every N seconds or cron); next_at is the next occurrence to fire.';
-- The firing pass: due schedules in next_at order, paused ones out of the way.
CREATE INDEX corral_schedules_due_idx ON corral_schedules (next_at) WHERE NOT paused;

CREATE TABLE corral_schedule_occurrences (
    schedule text NOT NULL,
    scheduled_for timestamptz NOT NULL,
    job_id bigint,
    outcome text NOT NULL,
    fired_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT schedule_occurrence_once PRIMARY KEY (schedule, scheduled_for),
    CONSTRAINT schedule_occurrence_outcome_known CHECK (outcome IN ('enqueued', 'skipped'))
);
COMMENT ON TABLE corral_schedule_occurrences IS
    'One row per fired occurrence: its key is what makes each occurrence happen once.';
-- A claimed job's occurrence (claim_v3, corral jobs get) and retention.
CREATE INDEX corral_schedule_occurrences_job_idx ON corral_schedule_occurrences (job_id);

-- Fire occurrences of one schedule, in the caller's transaction (the
-- firing pass locked the row with corral_due_schedules_v1). Occurrences at
-- or before last_occurrence are ignored; each other one gets a ledger row,
-- and a job only when that row is new (ON CONFLICT DO NOTHING: a second
-- firing of the same occurrence does nothing). Overlap, while the previous
-- job is unfinished: skip records 'skipped'; queue stops and leaves next_at
-- at that occurrence, and so does skip for an occurrence still in the future
-- (fired ahead: the next pass decides, at its time at the latest); allow
-- enqueues. Returns one element per occurrence
-- recorded: the new job's id, NULL for a skipped one.
CREATE FUNCTION corral_fire_schedule_v1(
    p_name text, p_occurrences timestamptz[], p_run_at timestamptz[], p_next_at timestamptz
) RETURNS bigint[]
LANGUAGE plpgsql
AS $$
DECLARE
    s corral_schedules%ROWTYPE;
    v_ids bigint[] := '{}';
    v_id bigint;
    v_last timestamptz;
    v_last_job bigint;
    v_next timestamptz := p_next_at;
    v_busy boolean;
    v_ready boolean := false;
    v_queue_max integer;
    v_run_at timestamptz;
BEGIN
    SELECT * INTO s FROM corral_schedules WHERE name = p_name FOR UPDATE;
    IF NOT FOUND THEN
        RETURN v_ids;
    END IF;
    v_last := s.last_occurrence;
    v_last_job := s.last_job_id;
    SELECT q.max_attempts INTO v_queue_max FROM corral_queues q WHERE q.name = s.queue;
    FOR i IN 1..coalesce(array_length(p_occurrences, 1), 0) LOOP
        CONTINUE WHEN v_last IS NOT NULL AND p_occurrences[i] <= v_last;
        v_busy := s.overlap <> 'allow' AND v_last_job IS NOT NULL
                  AND EXISTS (SELECT 1 FROM corral_jobs j WHERE j.id = v_last_job);
        -- queue waits for the job; so does an occurrence fired ahead (the
        -- operator's lead): skip decides at its time, not seconds before.
        IF v_busy AND (s.overlap = 'queue' OR p_occurrences[i] > now()) THEN
            v_next := p_occurrences[i];
            EXIT;
        END IF;
        v_id := CASE WHEN v_busy THEN NULL ELSE nextval('corral_jobs_id_seq'::regclass) END;
        INSERT INTO corral_schedule_occurrences (schedule, scheduled_for, job_id, outcome)
        VALUES (p_name, p_occurrences[i], v_id,
                CASE WHEN v_busy THEN 'skipped' ELSE 'enqueued' END)
        ON CONFLICT DO NOTHING;
        IF FOUND THEN
            IF v_id IS NOT NULL THEN
                v_run_at := coalesce(p_run_at[i], now());
                INSERT INTO corral_jobs (id, kind, queue, payload, priority, region, state,
                                         run_at, max_attempts)
                VALUES (v_id, s.kind, s.queue, s.payload, s.priority, s.region,
                        CASE WHEN v_run_at > now() THEN 'scheduled' ELSE 'pending' END,
                        v_run_at, coalesce(s.max_attempts, v_queue_max, 20));
                v_last_job := v_id;
                v_ready := v_ready OR v_run_at <= now();
            END IF;
            v_ids := v_ids || v_id;
        END IF;
        v_last := p_occurrences[i];
    END LOOP;
    UPDATE corral_schedules
       SET last_occurrence = v_last, last_job_id = v_last_job, next_at = v_next,
           updated_at = now()
     WHERE name = p_name;
    IF v_ready THEN
        PERFORM pg_notify('corral_jobs', s.queue);
    END IF;
    RETURN v_ids;
END
$$;

-- The schedules due now (next_at <= now() + lead), locked for this
-- transaction; a row another pass holds is skipped. Ends with the server's
-- clock, which every replica plans with.
CREATE FUNCTION corral_due_schedules_v1(p_limit integer, p_lead_s double precision)
RETURNS TABLE (
    name text, kind text, every_s double precision, cron text, timezone text, queue text,
    start_at timestamptz, end_at timestamptz, catch_up text, overlap text,
    jitter_s double precision, next_at timestamptz, last_occurrence timestamptz,
    created_at timestamptz, db_now timestamptz
)
LANGUAGE sql
AS $$
    SELECT s.name, s.kind, s.every_s, s.cron, s.timezone, s.queue, s.start_at, s.end_at,
           s.catch_up, s.overlap, s.jitter_s, s.next_at, s.last_occurrence, s.created_at,
           now()
      FROM corral_schedules s
     WHERE NOT s.paused
       AND s.next_at <= now() + make_interval(secs => greatest(coalesce(p_lead_s, 0), 0))
     ORDER BY s.next_at
     LIMIT least(greatest(coalesce(p_limit, 100), 1), 1000)
       FOR UPDATE SKIP LOCKED
$$;

-- Enqueue one job of a schedule now, outside its timetable (`corral
-- schedules run-now`); the ledger records it under the current time.
CREATE FUNCTION corral_run_schedule_now_v1(p_name text) RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    s corral_schedules%ROWTYPE;
    v_id bigint := nextval('corral_jobs_id_seq'::regclass);
    v_queue_max integer;
BEGIN
    SELECT * INTO s FROM corral_schedules WHERE name = p_name FOR UPDATE;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    SELECT q.max_attempts INTO v_queue_max FROM corral_queues q WHERE q.name = s.queue;
    INSERT INTO corral_schedule_occurrences (schedule, scheduled_for, job_id, outcome)
    VALUES (p_name, now(), v_id, 'enqueued');
    INSERT INTO corral_jobs (id, kind, queue, payload, priority, region, state, run_at,
                             max_attempts)
    VALUES (v_id, s.kind, s.queue, s.payload, s.priority, s.region, 'pending', now(),
            coalesce(s.max_attempts, v_queue_max, 20));
    UPDATE corral_schedules SET last_job_id = v_id, updated_at = now() WHERE name = p_name;
    PERFORM pg_notify('corral_jobs', s.queue);
    RETURN v_id;
END
$$;

-- The worker's firing pass: corral_due_schedules_v1 and
-- corral_fire_schedule_v1 for an enrolled caller.
CREATE FUNCTION corral_worker_due_schedules_v1(
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
BEGIN
    IF corral_caller_state_v1(p_worker_id, p_credential) = 'removed' THEN
        RAISE EXCEPTION 'worker % was removed from the fleet', p_worker_id
            USING ERRCODE = 'CR410';
    END IF;
    RETURN QUERY SELECT * FROM corral_due_schedules_v1(p_limit, least(p_lead_s, 60));
END
$$;

CREATE FUNCTION corral_worker_fire_schedule_v1(
    p_worker_id bigint, p_credential text, p_name text, p_occurrences timestamptz[],
    p_run_at timestamptz[], p_next_at timestamptz
) RETURNS bigint[]
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF corral_caller_state_v1(p_worker_id, p_credential) = 'removed' THEN
        RAISE EXCEPTION 'worker % was removed from the fleet', p_worker_id
            USING ERRCODE = 'CR410';
    END IF;
    IF coalesce(array_length(p_occurrences, 1), 0) > 1000 THEN
        RAISE EXCEPTION 'at most 1000 occurrences per firing (got %)',
            array_length(p_occurrences, 1) USING ERRCODE = '22023';
    END IF;
    -- A worker fires what is due, not the future (the firing pass's lead is
    -- capped at a minute too).
    IF EXISTS (SELECT 1 FROM unnest(p_occurrences) o WHERE o > now() + interval '60 seconds') THEN
        RAISE EXCEPTION 'a worker may fire only occurrences due within a minute'
            USING ERRCODE = '22023';
    END IF;
    RETURN corral_fire_schedule_v1(p_name, p_occurrences, p_run_at, p_next_at);
END
$$;

-- claim_v2's rows plus the occurrence a scheduled job was enqueued for
-- (NULL for any other job): handlers see it as job.scheduled_for.
CREATE FUNCTION corral_claim_v3(
    p_worker_id bigint, p_credential text, p_queues text[], p_batch integer,
    p_lease_s double precision
) RETURNS TABLE (
    id bigint, kind text, queue text, payload jsonb, priority smallint, region text,
    attempt integer, max_attempts integer, lease_token bigint, lease_expires_at timestamptz,
    enqueued_at timestamptz, run_at timestamptz, scheduled_for timestamptz
)
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT c.id, c.kind, c.queue, c.payload, c.priority, c.region, c.attempt, c.max_attempts,
           c.lease_token, c.lease_expires_at, c.enqueued_at, c.run_at,
           (SELECT o.scheduled_for FROM corral_schedule_occurrences o WHERE o.job_id = c.id)
      FROM corral_claim_v2(p_worker_id, p_credential, p_queues, p_batch, p_lease_s) AS c
$$;

CREATE OR REPLACE FUNCTION corral_purge_finished_v1(p_older_than_s double precision, p_limit integer)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    v_deleted integer;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('corral_retention')) THEN
        RETURN NULL;
    END IF;
    PERFORM corral_relax_ack_v1();
    DELETE FROM corral_jobs_finished f
     WHERE f.id = ANY(ARRAY(SELECT o.id FROM corral_jobs_finished o
                             WHERE o.finished_at < now() - make_interval(secs => p_older_than_s)
                             LIMIT p_limit));
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
    DELETE FROM corral_job_interruptions i
     WHERE i.id = ANY(ARRAY(SELECT o.id FROM corral_job_interruptions o
                             WHERE o.at < now() - make_interval(secs => p_older_than_s)
                             LIMIT p_limit));
    -- Ledger rows of schedules (0007) whose job retention has deleted, and
    -- skipped occurrences, past the same age; each schedule's latest row
    -- stays (it shows when the schedule last fired).
    DELETE FROM corral_schedule_occurrences o
     WHERE (o.schedule, o.scheduled_for) IN (
            SELECT x.schedule, x.scheduled_for FROM corral_schedule_occurrences x
             WHERE x.fired_at < now() - make_interval(secs => p_older_than_s)
               AND NOT EXISTS (SELECT 1 FROM corral_jobs j WHERE j.id = x.job_id)
               AND NOT EXISTS (SELECT 1 FROM corral_jobs_finished f WHERE f.id = x.job_id)
               AND x.scheduled_for < (SELECT max(y.scheduled_for)
                                        FROM corral_schedule_occurrences y
                                       WHERE y.schedule = x.schedule)
             LIMIT p_limit);
    RETURN v_deleted;
END
$$;

-- Schedules a worker's handlers declare (`@corral.handler(...,
-- schedule=...)`, `corral.schedule(...)`), upserted at its start-up: the
-- stored row, locked, and the upsert. A worker may declare schedules only
-- on the queues it was enrolled for, and change only schedules on those
-- queues (it cannot enqueue elsewhere through one, nor move one away).
CREATE FUNCTION corral_worker_lock_schedule_v1(
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
BEGIN
    IF corral_caller_state_v1(p_worker_id, p_credential) = 'removed' THEN
        RAISE EXCEPTION 'worker % was removed from the fleet', p_worker_id
            USING ERRCODE = 'CR410';
    END IF;
    RETURN QUERY
    SELECT s.name, s.kind, s.payload, s.every_s, s.cron, s.timezone, s.queue, s.priority,
           s.region, s.max_attempts, s.start_at, s.end_at, s.catch_up, s.overlap, s.jitter_s,
           s.created_at, now()
      FROM corral_schedules s WHERE s.name = p_name
       FOR UPDATE;
END
$$;

CREATE FUNCTION corral_worker_declare_schedule_v1(
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
BEGIN
    IF corral_caller_state_v1(p_worker_id, p_credential) = 'removed' THEN
        RAISE EXCEPTION 'worker % was removed from the fleet', p_worker_id
            USING ERRCODE = 'CR410';
    END IF;
    SELECT w.queues INTO v_served FROM corral_workers w WHERE w.id = p_worker_id;
    IF NOT p_queue = ANY(coalesce(v_served, '{}')) THEN
        RAISE EXCEPTION 'worker % may not declare schedule % on queue %: it serves only %',
            p_worker_id, p_name, p_queue, v_served USING ERRCODE = '42501';
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
     WHERE s.queue = ANY(v_served);
    IF NOT FOUND THEN
        -- The name is taken by a schedule on a queue this worker does not serve.
        RAISE EXCEPTION 'worker % may not change schedule %: it is on a queue it does not serve',
            p_worker_id, p_name USING ERRCODE = '42501';
    END IF;
END
$$;
