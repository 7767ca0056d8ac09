-- 0017: a worker's schedule functions reach only the queues it serves.
--
-- corral_worker_due_schedules_v1, _lock_schedule_v1 and _fire_schedule_v1
-- (0010) checked only that the caller was an enrolled worker: any worker
-- could read any schedule's payload (lock), and fire any schedule with
-- occurrences, run times and a next occurrence of its own choosing, so it
-- could enqueue up to 1,000 jobs a call on a queue it does not serve, or stop
-- a schedule for good (p_next_at NULL). docs/security.md promises neither.
--
-- Same signatures and rows, bodies replaced in place (workers of every
-- release call them): a worker sees and fires only the schedules on its own
-- queues (corral_workers.queues, as _declare_schedule_v1 already checked),
-- and a firing must be the schedule's own: not paused, occurrences from its
-- stored next_at on, each job's run time within its jitter, and a next
-- occurrence after the last one fired (NULL only for a schedule with an
-- end_at, once it is over). The operator's and the admin CLI's firing
-- (corral_fire_schedule_v1, corral_due_schedules_v1) is unchanged.

-- The queues a worker serves, once its credential checks out (a removed
-- worker is refused, as by every worker function). Not granted to
-- workers: the SECURITY DEFINER functions below call it as the owner.
CREATE FUNCTION corral_worker_queues_v1(p_worker_id bigint, p_credential text)
RETURNS text[]
LANGUAGE plpgsql
AS $$
DECLARE
    v_served text[];
BEGIN
    IF corral_caller_state_v1(p_worker_id, p_credential) = 'removed' THEN
        RAISE EXCEPTION 'worker % was removed from the fleet', p_worker_id
            USING ERRCODE = 'CR410';
    END IF;
    SELECT w.queues INTO v_served FROM corral_workers w WHERE w.id = p_worker_id;
    RETURN coalesce(v_served, '{}');
END
$$;

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
BEGIN
    v_served := corral_worker_queues_v1(p_worker_id, p_credential);
    RETURN QUERY
    SELECT s.name, s.kind, s.every_s, s.cron, s.timezone, s.queue, s.start_at, s.end_at,
           s.catch_up, s.overlap, s.jitter_s, s.next_at, s.last_occurrence, s.created_at,
           now()
      FROM corral_schedules s
     WHERE NOT s.paused
       AND s.queue = ANY(v_served)
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
BEGIN
    v_served := corral_worker_queues_v1(p_worker_id, p_credential);
    -- A schedule on another queue reads as absent: the declare that follows
    -- refuses to take its name over, without showing its payload.
    RETURN QUERY
    SELECT s.name, s.kind, s.payload, s.every_s, s.cron, s.timezone, s.queue, s.priority,
           s.region, s.max_attempts, s.start_at, s.end_at, s.catch_up, s.overlap, s.jitter_s,
           s.created_at, now()
      FROM corral_schedules s
     WHERE s.name = p_name AND s.queue = ANY(v_served)
       FOR UPDATE;
END
$$;

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
    s corral_schedules%ROWTYPE;
    v_count integer := coalesce(array_length(p_occurrences, 1), 0);
    v_latest timestamptz;
BEGIN
    v_served := corral_worker_queues_v1(p_worker_id, p_credential);
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
