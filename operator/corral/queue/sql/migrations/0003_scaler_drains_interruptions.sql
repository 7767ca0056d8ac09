-- 0003: drains the autoscaler asks for, and a record of interrupted jobs.
--
-- * corral_workers.drain_requested_by may be 'scaler': the operator drains
--   the idlest workers before it scales a pool down, and may cancel that
--   drain (back to active) when new demand needs them. An 'admin' drain
--   (`corral workers drain`) is never undone by the scaler.
-- * corral_workers_pool_idx: the operator reads one pool's workers every
--   evaluation; without it that is a scan of the whole registry.
-- * corral_job_interruptions: one row each time a running job was taken
--   from its worker without finishing: handed back at shutdown
--   (corral_release_v1) or retried after its lease lapsed (corral_reap_v1).
--   Jobs that were never interrupted have no row: the audit that proves a
--   scale-down interrupted nothing, and what an operator reads to see why a
--   job ran twice. Retention deletes old rows with the finished jobs.
-- * corral_drain_self_v1: a worker that drains itself (its pod is going)
--   takes over a drain the scaler began, so that the scaler cannot cancel it.

ALTER TABLE corral_workers DROP CONSTRAINT worker_drain_requested_by_known;
ALTER TABLE corral_workers ADD CONSTRAINT worker_drain_requested_by_known
    CHECK (drain_requested_by IS NULL OR drain_requested_by IN ('admin', 'self', 'scaler'));

CREATE INDEX corral_workers_pool_idx ON corral_workers (pool) WHERE state <> 'removed';

CREATE TABLE corral_job_interruptions (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id bigint NOT NULL,
    worker_id bigint,
    attempt integer NOT NULL,
    reason text NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT interruption_reason_known CHECK (reason IN ('handed_back', 'lease_expired'))
);
COMMENT ON TABLE corral_job_interruptions IS
    'Running jobs taken from their worker unfinished (handed back, or lease lapsed).';
CREATE INDEX corral_job_interruptions_job_idx ON corral_job_interruptions (job_id);
CREATE INDEX corral_job_interruptions_at_brin ON corral_job_interruptions USING brin (at);

CREATE OR REPLACE FUNCTION corral_release_v1(p_ids bigint[], p_tokens bigint[]) RETURNS bigint[]
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_done bigint[];
    v_queues text[];
BEGIN
    PERFORM corral_relax_ack_v1();
    WITH held AS (
        SELECT o.id, o.worker_id, o.attempt FROM corral_jobs o
          JOIN unnest(p_ids, p_tokens) AS d(id, token) ON o.id = d.id AND o.lease_token = d.token
         WHERE o.id = ANY(p_ids)
           FOR UPDATE OF o
    ), released AS (
        UPDATE corral_jobs j
           SET state = 'pending', attempt = j.attempt - 1, lease_token = NULL,
               lease_expires_at = NULL, worker_id = NULL
          FROM held h
         WHERE j.id = h.id
        RETURNING j.id, j.queue, h.worker_id, h.attempt
    ), noted AS (
        INSERT INTO corral_job_interruptions (job_id, worker_id, attempt, reason)
        SELECT r.id, r.worker_id, r.attempt, 'handed_back' FROM released r
    )
    SELECT coalesce(array_agg(r.id), '{}'), coalesce(array_agg(DISTINCT r.queue), '{}')
      INTO v_done, v_queues
      FROM released r;
    PERFORM pg_notify('corral_jobs', q.queue) FROM unnest(v_queues) AS q(queue);
    RETURN ARRAY(SELECT x.id FROM unnest(p_ids) AS x(id) WHERE x.id <> ALL (v_done));
END
$$;

CREATE OR REPLACE FUNCTION corral_reap_v1(p_limit integer DEFAULT 1000) RETURNS integer
LANGUAGE plpgsql
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
         LIMIT p_limit
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

CREATE OR REPLACE FUNCTION corral_drain_self_v1(p_worker_id bigint, p_credential text) RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
    v_state text;
    v_by text;
BEGIN
    SELECT w.state, w.drain_requested_by INTO v_state, v_by FROM corral_workers w
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
    ELSIF v_by = 'scaler' THEN
        -- The pod is going: the scaler may no longer cancel this drain.
        UPDATE corral_workers w SET drain_requested_by = 'self' WHERE w.id = p_worker_id;
    END IF;
    RETURN v_state;
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
    RETURN v_deleted;
END
$$;
