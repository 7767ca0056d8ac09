-- 0002: job results, workers that drain themselves, retention one at a time.
--
-- * corral_jobs_finished.result: what the handler returned (NULL when it
--   returned nothing). corral_complete_v2 writes it; corral_complete_v1 stays
--   for the no-result path and for workers of the previous version.
-- * corral_workers.drain_requested_by: who asked for the drain. 'admin' is
--   `corral workers drain` or the operator: it outlasts a restart. 'self' is
--   the worker itself (SIGTERM, POST /drain, its preStop hook): a restarted
--   container of that worker comes back active.
-- * corral_drain_self_v1: a worker moves its own row to draining.
-- * corral_purge_finished_v1: one retention batch, one process at a time.

ALTER TABLE corral_jobs_finished ADD COLUMN result jsonb;

ALTER TABLE corral_workers ADD COLUMN drain_requested_by text;
ALTER TABLE corral_workers ADD CONSTRAINT worker_drain_requested_by_known
    CHECK (drain_requested_by IS NULL OR drain_requested_by IN ('admin', 'self'));
-- Until now only an admin could drain a worker.
UPDATE corral_workers SET drain_requested_by = 'admin' WHERE state IN ('draining', 'drained');

-- corral_complete_v1 plus each job's result (NULL elements: no result).
CREATE FUNCTION corral_complete_v2(p_ids bigint[], p_tokens bigint[], p_results jsonb[])
RETURNS bigint[]
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_rejected bigint[];
BEGIN
    PERFORM corral_relax_ack_v1();
    WITH done AS (
        DELETE FROM corral_jobs j
         USING unnest(p_ids, p_tokens, p_results) AS d(id, token, result)
         WHERE j.id = ANY(p_ids) AND j.id = d.id AND j.lease_token = d.token
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

-- A worker drains itself: an active row goes to draining (drain_requested_by
-- 'self'); a row draining or drained already is left as it is. Raises CR401
-- for a wrong credential and CR410 for a removed worker; returns the state.
CREATE FUNCTION corral_drain_self_v1(p_worker_id bigint, p_credential text) RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
    v_state text;
BEGIN
    SELECT w.state INTO v_state FROM corral_workers w
     WHERE w.id = p_worker_id AND w.credential_hash = corral_hash_secret_v1(p_credential)
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'worker % is not enrolled or its credential is wrong', p_worker_id
            USING ERRCODE = 'CR401';
    END IF;
    IF v_state = 'removed' THEN
        RAISE EXCEPTION 'worker % was removed from the fleet', p_worker_id
            USING ERRCODE = 'CR410';
    END IF;
    IF v_state = 'active' THEN
        UPDATE corral_workers w
           SET state = 'draining', drain_requested_at = now(), drain_requested_by = 'self'
         WHERE w.id = p_worker_id;
        v_state := 'draining';
    END IF;
    RETURN v_state;
END
$$;

-- One batch of retention: delete up to p_limit finished jobs that finished
-- more than p_older_than_s seconds ago; returns how many. Only one process
-- purges at a time fleet-wide: the others get NULL back at once. Workers call
-- it in a loop of small batches (each its own transaction) so no lock or
-- statement is held long.
CREATE FUNCTION corral_purge_finished_v1(p_older_than_s double precision, p_limit integer)
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
    RETURN v_deleted;
END
$$;
