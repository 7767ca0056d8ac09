-- 0008: per-queue retention caps, beside the age limit.
--
-- * corral_queues.max_dead (default 5,000; a queue without a row gets 5,000
--   too) and max_completed (default NULL: no cap): at most this many dead /
--   completed jobs stay in corral_jobs_finished per queue, the oldest
--   deleted first (`corral queues set Q --max-dead N --max-completed N`).
-- * corral_purge_over_cap_v1: one batch of that, called by
--   corral_purge_finished_v1 (so by every worker's retention pass, through
--   corral_purge_finished_v2) under the retention advisory lock.
-- * corral_jobs_finished_dead: a partial index over the (few) dead jobs.

ALTER TABLE corral_queues
    ADD COLUMN max_dead integer DEFAULT 5000,
    ADD COLUMN max_completed integer,
    ADD CONSTRAINT queue_max_dead_not_negative CHECK (max_dead IS NULL OR max_dead >= 0),
    ADD CONSTRAINT queue_max_completed_not_negative
        CHECK (max_completed IS NULL OR max_completed >= 0);

-- Dead jobs are few (their cap bounds them): the caps count and order them here.
CREATE INDEX corral_jobs_finished_dead ON corral_jobs_finished (queue, finished_at, id)
    WHERE state = 'dead';

-- One batch of the per-queue caps: delete up to p_limit finished jobs,
-- oldest first, from queues that keep more dead jobs than their max_dead
-- (5,000 for a queue without a corral_queues row; NULL: no cap) or more
-- completed jobs than their max_completed (NULL, the default: no cap).
-- Returns how many. Called by corral_purge_finished_v1 under its advisory
-- lock. Dead rows are few (the cap bounds them) and have a partial index;
-- a completed cap reads that queue's completed rows once per batch.
CREATE FUNCTION corral_purge_over_cap_v1(p_limit integer)
RETURNS integer
LANGUAGE plpgsql
AS $$
DECLARE
    v_cap record;
    v_edge record;
    v_left integer := p_limit;
    v_deleted integer;
BEGIN
    FOR v_cap IN
        SELECT d.queue, 'dead'::text AS state,
               CASE WHEN q.name IS NULL THEN 5000 ELSE q.max_dead END AS keep
          FROM (SELECT f.queue FROM corral_jobs_finished f
                 WHERE f.state = 'dead' GROUP BY f.queue) d
          LEFT JOIN corral_queues q ON q.name = d.queue
        UNION ALL
        SELECT q.name, 'completed'::text, q.max_completed
          FROM corral_queues q WHERE q.max_completed IS NOT NULL
    LOOP
        EXIT WHEN v_left <= 0;
        CONTINUE WHEN v_cap.keep IS NULL;
        -- The newest row past the cap: it and everything older goes.
        SELECT f.finished_at, f.id INTO v_edge FROM corral_jobs_finished f
         WHERE f.queue = v_cap.queue AND f.state = v_cap.state
         ORDER BY f.finished_at DESC, f.id DESC OFFSET v_cap.keep LIMIT 1;
        CONTINUE WHEN NOT FOUND;
        DELETE FROM corral_jobs_finished f
         WHERE f.id = ANY(ARRAY(SELECT o.id FROM corral_jobs_finished o
                                 WHERE o.queue = v_cap.queue AND o.state = v_cap.state
                                   AND (o.finished_at, o.id) <= (v_edge.finished_at, v_edge.id)
                                 ORDER BY o.finished_at, o.id
                                 LIMIT v_left));
        GET DIAGNOSTICS v_deleted = ROW_COUNT;
        v_left := v_left - v_deleted;
    END LOOP;
    RETURN p_limit - v_left;
END
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
    -- Then the per-queue caps (0008), in the same batch and under the same lock.
    RETURN v_deleted + corral_purge_over_cap_v1(p_limit);
END
$$;
