-- 0015: the dashboard's throughput counted where the history is written
-- (issue 16: the server's time a job, and the rollup's).
--
-- 0011 gave each finished row a `seq` (a sequence and a btree on it, written
-- with every row) and the rollup read the rows past its watermark again to
-- count them, with a gap list for the seqs a late commit skipped. In a
-- drain of 100,000 jobs (2 workers, claims of 1,000, pg_stat_statements)
-- the rollup took 6.1 us a job and the seq index about 2.4 us of
-- complete's 25.8 (claim 24.4): about 15% of the server's time a job went
-- to counting it.
--
-- Here a statement-level trigger on corral_jobs_finished counts the rows each
-- statement inserts (its transition table, grouped by queue and minute) into
-- corral_finished_counts: one row a statement and queue, only INSERTed, so
-- no completion waits on another's counter row. The rollup moves those rows
-- into corral_throughput_minutes with one DELETE ... RETURNING: a counts row
-- is committed with the finished rows it counts, so a rollup sees both or
-- neither, and a late commit is simply folded by the next rollup. No seq,
-- no watermark, no gaps; the history is never read back.
--
-- Same counts as before: completed, failed (attempt - 1 of each completed or
-- dead row: a retry leaves no row) and dead, in the minute of the row's
-- finished_at; cancelled and expired rows are folded but count nowhere.

CREATE TABLE corral_finished_counts (
    minute timestamptz NOT NULL,
    queue text NOT NULL,
    finished bigint NOT NULL,
    completed bigint NOT NULL,
    failed bigint NOT NULL,
    dead bigint NOT NULL
);
COMMENT ON TABLE corral_finished_counts IS
    'Finished rows counted per inserting statement, queue and minute (0015), until the rollup folds them.';

-- Invoker's rights: rows reach the history through the SECURITY DEFINER
-- functions (as the owner) or an admin, who may insert here (privileges.sql).
CREATE FUNCTION corral_count_finished_v1() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, public, pg_temp
AS $$
BEGIN
    INSERT INTO corral_finished_counts (minute, queue, finished, completed, failed, dead)
    SELECT date_trunc('minute', n.finished_at), n.queue, count(*),
           count(*) FILTER (WHERE n.state = 'completed'),
           coalesce(sum(greatest(n.attempt - 1, 0)) FILTER (WHERE n.state IN ('completed', 'dead')), 0),
           count(*) FILTER (WHERE n.state = 'dead')
      FROM counted_rows n
     GROUP BY 1, 2;
    RETURN NULL;
END
$$;

-- The rows inserted before this point are counted the 0011 way, once and
-- for all: the lock waits for every transaction still inserting (its rows
-- would otherwise be neither past the watermark nor under the trigger) and
-- keeps new ones out until this migration commits.
LOCK TABLE corral_jobs_finished IN SHARE ROW EXCLUSIVE MODE;
DO $$
DECLARE
    v_sampled timestamptz := (SELECT depth_minute FROM corral_rollup_state);
BEGIN
    LOOP
        EXIT WHEN corral_rollup_throughput_v1(100000) = 0;
    END LOOP;
    -- Depth is left to the rollups that run (ON CONFLICT keeps any sample taken here).
    UPDATE corral_rollup_state SET depth_minute = v_sampled;
END
$$;

CREATE TRIGGER corral_jobs_finished_counted
    AFTER INSERT ON corral_jobs_finished
    REFERENCING NEW TABLE AS counted_rows
    FOR EACH STATEMENT EXECUTE FUNCTION corral_count_finished_v1();

-- The column, its sequence and its index go together.
ALTER TABLE corral_jobs_finished DROP COLUMN seq;
DROP TABLE corral_rollup_gaps;
ALTER TABLE corral_rollup_state DROP COLUMN watermark;
COMMENT ON TABLE corral_rollup_state IS
    'The rollup''s single row: the minute of its last depth sample and when it last ran.';

-- Fold the counts not folded yet (at most p_limit counts rows, each one
-- statement's finished jobs in one queue and minute, so a long backlog is
-- caught up over several short calls) into corral_throughput_minutes and,
-- once a minute, sample the depth of every queue; returns how many finished
-- jobs it folded (at least p_limit when it read p_limit rows: call again).
-- Callers queue on an advisory lock; with p_wait false a caller that finds
-- it held returns NULL at once (the workers' passes: another is rolling
-- up). Counters and depth samples older than seven days are deleted as it
-- goes. Same signature and answer as 0011's, which workers call unchanged.
CREATE OR REPLACE FUNCTION corral_rollup_throughput_v1(
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
    -- Rows are only inserted and deleted, and deleted only here under the
    -- lock: the addresses read are the rows the DELETE takes.
    WITH taken AS MATERIALIZED (
        DELETE FROM corral_finished_counts c
         WHERE c.ctid = ANY(ARRAY(SELECT k.ctid FROM corral_finished_counts k
                                   LIMIT greatest(p_limit, 1)))
        RETURNING c.minute, c.queue, c.finished, c.completed, c.failed, c.dead
    ), counted AS (
        INSERT INTO corral_throughput_minutes AS t (minute, queue, completed, failed, dead)
        SELECT x.minute, x.queue, sum(x.completed), sum(x.failed), sum(x.dead)
          FROM taken x
         GROUP BY x.minute, x.queue
        HAVING sum(x.completed) + sum(x.failed) + sum(x.dead) > 0
        ON CONFLICT ON CONSTRAINT throughput_minutes_pkey DO UPDATE
           SET completed = t.completed + excluded.completed,
               failed = t.failed + excluded.failed,
               dead = t.dead + excluded.dead
    )
    SELECT coalesce(sum(x.finished), 0) INTO v_read FROM taken x;
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
        DELETE FROM corral_throughput_minutes t WHERE t.minute < v_minute - interval '7 days';
        DELETE FROM corral_depth_minutes d WHERE d.minute < v_minute - interval '7 days';
    END IF;
    UPDATE corral_rollup_state SET depth_minute = v_minute, rolled_at = now();
    RETURN v_read;
END
$$;
