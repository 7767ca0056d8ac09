-- 0011: what the dashboard reads, kept cheap at any size.
--
-- * corral_audit: every action taken through the dashboard (or anyone who
--   records one): who, what, on what, when. `corral audit list` shows it.
-- * Per-minute throughput per queue (corral_throughput_minutes: completed,
--   failed, dead) and depth per queue (corral_depth_minutes: waiting jobs),
--   so the last hour's charts cost O(queues x minutes) and never scan
--   corral_jobs_finished.
--
-- The counters are filled off the hot path: completions, failures and
-- cancellations are untouched (no counter row that concurrent workers would
-- queue on). corral_jobs_finished gains `seq`, drawn from a sequence as each
-- row arrives (rows from before this migration keep NULL and are never
-- counted), and corral_rollup_throughput_v1() folds the rows past its
-- watermark into the counters, one caller at a time (advisory lock). A
-- transaction that drew a lower seq may commit after a higher one was folded:
-- the seqs skipped below the watermark are kept as gaps and looked up again
-- on each rollup for ten minutes, so such a row is counted once, late.
--
-- "failed" is attempts that failed and were retried (handler errors,
-- timeouts, lapsed leases): a retry leaves no row behind, so they are read
-- from the attempt number of the job when it finishes (attempt - 1 of a
-- completed or dead job), in the minute it finished. Completions of a queue
-- with keep_completed false leave no row either and are not counted.

CREATE TABLE corral_audit (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    actor text NOT NULL,
    action text NOT NULL,
    target text NOT NULL DEFAULT '',
    detail jsonb,
    CONSTRAINT audit_actor_not_empty CHECK (actor <> ''),
    CONSTRAINT audit_action_not_empty CHECK (action <> '')
);
COMMENT ON TABLE corral_audit IS
    'Who did what to which target, and when (dashboard actions); newest first by (at, id).';
CREATE INDEX corral_audit_at_idx ON corral_audit (at DESC, id DESC);

ALTER TABLE corral_jobs_finished ADD COLUMN seq bigint;
CREATE SEQUENCE corral_jobs_finished_seq AS bigint OWNED BY corral_jobs_finished.seq;
ALTER TABLE corral_jobs_finished
    ALTER COLUMN seq SET DEFAULT nextval('corral_jobs_finished_seq'::regclass);
COMMENT ON COLUMN corral_jobs_finished.seq IS
    'Arrival order (0011): the throughput rollup reads the rows past its watermark.';
CREATE INDEX corral_jobs_finished_seq_idx ON corral_jobs_finished (seq) WHERE seq IS NOT NULL;

CREATE TABLE corral_throughput_minutes (
    minute timestamptz NOT NULL,
    queue text NOT NULL,
    completed bigint NOT NULL DEFAULT 0,
    failed bigint NOT NULL DEFAULT 0,
    dead bigint NOT NULL DEFAULT 0,
    CONSTRAINT throughput_minutes_pkey PRIMARY KEY (minute, queue)
);
COMMENT ON TABLE corral_throughput_minutes IS
    'Jobs finished per queue and minute (finished_at), folded in by corral_rollup_throughput_v1.';

CREATE TABLE corral_depth_minutes (
    minute timestamptz NOT NULL,
    queue text NOT NULL,
    waiting bigint NOT NULL,
    CONSTRAINT depth_minutes_pkey PRIMARY KEY (minute, queue)
);
COMMENT ON TABLE corral_depth_minutes IS
    'Jobs waiting (pending, or scheduled and due) per queue, sampled once a minute by the rollup.';

CREATE TABLE corral_rollup_state (
    one boolean PRIMARY KEY DEFAULT true,
    watermark bigint NOT NULL DEFAULT 0,
    depth_minute timestamptz,
    rolled_at timestamptz,
    CONSTRAINT rollup_state_one_row CHECK (one)
);
COMMENT ON TABLE corral_rollup_state IS
    'The rollup''s single row: every finished seq up to watermark is folded, or a gap.';
INSERT INTO corral_rollup_state DEFAULT VALUES;

CREATE TABLE corral_rollup_gaps (
    seq bigint PRIMARY KEY,
    since timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE corral_rollup_gaps IS
    'Seqs below the watermark not seen yet (a transaction still open, or rolled back).';

-- Fold the finished rows not counted yet (at most p_limit past the
-- watermark, lowest seq first, so a long backlog is caught up over several
-- short calls) into corral_throughput_minutes and, once a minute, sample the
-- depth of every queue; returns how many finished rows it read. Callers
-- queue on an advisory lock, so concurrent rollups never count a row twice;
-- with p_wait false a caller that finds it held returns NULL at once (the
-- workers' passes: another is rolling up). Counters and depth samples older
-- than seven days are deleted as it goes.
CREATE FUNCTION corral_rollup_throughput_v1(
    p_limit integer DEFAULT 100000, p_wait boolean DEFAULT true
) RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    v_state corral_rollup_state;
    v_read bigint;
    v_minute timestamptz;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        -- A snapshot taken before the lock would not see the previous rollup's counts.
        RAISE EXCEPTION 'corral_rollup_throughput_v1 must run at READ COMMITTED, not %',
            current_setting('transaction_isolation') USING ERRCODE = '25001';
    END IF;
    IF p_wait THEN
        PERFORM pg_advisory_xact_lock(hashtext('corral_rollup_throughput'));
    ELSIF NOT pg_try_advisory_xact_lock(hashtext('corral_rollup_throughput')) THEN
        RETURN NULL;
    END IF;
    SELECT * INTO v_state FROM corral_rollup_state;
    WITH fresh AS MATERIALIZED (
        (SELECT f.seq, f.queue, f.state, f.attempt,
                date_trunc('minute', f.finished_at) AS minute
           FROM corral_jobs_finished f
          WHERE f.seq > v_state.watermark
          ORDER BY f.seq
          LIMIT greatest(p_limit, 1))
        UNION ALL
        SELECT f.seq, f.queue, f.state, f.attempt, date_trunc('minute', f.finished_at)
          FROM corral_jobs_finished f
         WHERE f.seq = ANY(ARRAY(SELECT g.seq FROM corral_rollup_gaps g))
           AND f.seq <= v_state.watermark
    ), counted AS (
        INSERT INTO corral_throughput_minutes AS t (minute, queue, completed, failed, dead)
        SELECT x.minute, x.queue, count(*) FILTER (WHERE x.state = 'completed'),
               sum(greatest(x.attempt - 1, 0)), count(*) FILTER (WHERE x.state = 'dead')
          FROM fresh x
         WHERE x.state IN ('completed', 'dead')
         GROUP BY x.minute, x.queue
        ON CONFLICT ON CONSTRAINT throughput_minutes_pkey DO UPDATE
           SET completed = t.completed + excluded.completed,
               failed = t.failed + excluded.failed,
               dead = t.dead + excluded.dead
    ), filled AS (
        DELETE FROM corral_rollup_gaps g
         WHERE g.seq IN (SELECT x.seq FROM fresh x WHERE x.seq <= v_state.watermark)
            OR g.since < now() - interval '10 minutes'
    ), skipped AS (
        INSERT INTO corral_rollup_gaps (seq)
        SELECT s FROM generate_series(v_state.watermark + 1,
                                      (SELECT max(x.seq) FROM fresh x)) AS s
         WHERE NOT EXISTS (SELECT 1 FROM fresh x WHERE x.seq = s)
    ), moved AS (
        -- In the same statement as the read: a row committed a moment later
        -- is past the new watermark, or a gap, never skipped.
        UPDATE corral_rollup_state s
           SET watermark = greatest(s.watermark, coalesce((SELECT max(x.seq) FROM fresh x),
                                                          s.watermark)),
               rolled_at = now()
    )
    SELECT count(*) INTO v_read FROM fresh;
    v_minute := date_trunc('minute', now());
    IF v_state.depth_minute IS DISTINCT FROM v_minute THEN
        INSERT INTO corral_depth_minutes (minute, queue, waiting)
        SELECT v_minute, w.queue, sum(w.n)
          FROM (SELECT j.queue, count(*) AS n FROM corral_jobs j
                 WHERE j.state = 'pending' GROUP BY j.queue
                UNION ALL
                SELECT j.queue, count(*) FROM corral_jobs j
                 WHERE j.state = 'scheduled' AND j.run_at <= now() GROUP BY j.queue) w
         GROUP BY w.queue
        ON CONFLICT ON CONSTRAINT depth_minutes_pkey DO NOTHING;
        UPDATE corral_rollup_state SET depth_minute = v_minute;
        DELETE FROM corral_throughput_minutes t WHERE t.minute < v_minute - interval '7 days';
        DELETE FROM corral_depth_minutes d WHERE d.minute < v_minute - interval '7 days';
    END IF;
    RETURN v_read;
END
$$;

-- A worker's rollup pass (worker/upkeep.py): corral_rollup_throughput_v1 for
-- an enrolled caller, at most 100,000 rows, skipped (NULL) while another
-- process holds the rollup's lock.
CREATE FUNCTION corral_worker_rollup_throughput_v1(
    p_worker_id bigint, p_credential text, p_limit integer
) RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    IF corral_caller_state_v1(p_worker_id, p_credential) = 'removed' THEN
        RAISE EXCEPTION 'worker % was removed from the fleet', p_worker_id
            USING ERRCODE = 'CR410';
    END IF;
    RETURN corral_rollup_throughput_v1(least(greatest(p_limit, 1), 100000), false);
END
$$;
