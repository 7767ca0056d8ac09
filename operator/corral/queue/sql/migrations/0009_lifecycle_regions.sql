-- 0009: worker restarts and resumes from the CLI, and jobs fanned out over regions.
--
-- * drain_requested_by 'restart' (`corral workers restart`): the worker
--   drains, exits with its restart code, and its supervisor starts it again;
--   like a drain of its own ('self'), it ends when the worker re-authenticates
--   (corral_authenticate_v2), so the restarted worker is active.
-- * corral_heartbeat_v3: corral_heartbeat_v2, answering 'restarting' (not
--   'draining' or 'drained') while a restart is asked for, so the worker
--   knows to exit once drained. Workers of the previous release keep calling
--   v2 and see an ordinary drain.
-- * corral_job_groups / corral_job_group_jobs: one job per region under a
--   group (`corral jobs enqueue --regions`), rolled up by the group's rule.

ALTER TABLE corral_workers DROP CONSTRAINT worker_drain_requested_by_known;
ALTER TABLE corral_workers ADD CONSTRAINT worker_drain_requested_by_known
    CHECK (drain_requested_by IS NULL
           OR drain_requested_by IN ('admin', 'self', 'scaler', 'restart'));

CREATE OR REPLACE FUNCTION corral_authenticate_v2(
    p_worker_id bigint, p_credential text, p_name text, p_queues text[],
    p_concurrency integer, p_version text
) RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_state text;
    v_enrolled text[];
    v_outside text[];
BEGIN
    v_state := corral_caller_state_v1(p_worker_id, p_credential);
    IF v_state = 'removed' THEN
        RETURN v_state;
    END IF;
    SELECT w.enrolled_queues INTO v_enrolled FROM corral_workers w WHERE w.id = p_worker_id;
    IF p_queues IS NOT NULL AND v_enrolled IS NOT NULL THEN
        v_outside := ARRAY(SELECT q FROM unnest(p_queues) q WHERE q <> ALL (v_enrolled));
        IF cardinality(v_outside) > 0 THEN
            RAISE EXCEPTION 'worker % enrolled for queues %, not %', p_worker_id, v_enrolled,
                v_outside USING ERRCODE = 'CR403',
                HINT = 'enroll again with a token for those queues';
        END IF;
    END IF;
    UPDATE corral_workers w
       SET name = coalesce(p_name, w.name), queues = coalesce(p_queues, w.queues),
           concurrency = coalesce(p_concurrency, w.concurrency),
           version = coalesce(p_version, w.version), last_heartbeat = now(),
           credential_expires_at = now() + interval '1 day',
           state = CASE WHEN w.drain_requested_by IN ('self', 'restart')
                             AND w.state IN ('draining', 'drained')
                        THEN 'active' ELSE w.state END,
           drain_requested_at = CASE WHEN w.drain_requested_by IN ('self', 'restart') THEN NULL
                                     ELSE w.drain_requested_at END,
           drained_at = CASE WHEN w.drain_requested_by IN ('self', 'restart') THEN NULL
                             ELSE w.drained_at END,
           drain_requested_by = CASE WHEN w.drain_requested_by IN ('self', 'restart') THEN NULL
                                     ELSE w.drain_requested_by END
     WHERE w.id = p_worker_id
    RETURNING w.state INTO v_state;
    RETURN v_state;
END
$$;

-- corral_heartbeat_v2, answering 'restarting' while `corral workers restart`
-- asks this worker to drain and exit for its supervisor to start it again.
CREATE FUNCTION corral_heartbeat_v3(
    p_worker_id bigint, p_credential text, p_in_flight integer, p_lease_s double precision,
    p_held bigint[]
) RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_state text;
BEGIN
    v_state := corral_heartbeat_v2(p_worker_id, p_credential, p_in_flight, p_lease_s, p_held);
    IF v_state IN ('draining', 'drained') AND EXISTS (
        SELECT 1 FROM corral_workers w
         WHERE w.id = p_worker_id AND w.drain_requested_by = 'restart'
    ) THEN
        RETURN 'restarting';
    END IF;
    RETURN v_state;
END
$$;

-- One job per region, enqueued together, rolled up by the rule
-- (corral.queue.groups): all, any or majority of the regions completed.
CREATE TABLE corral_job_groups (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind text NOT NULL,
    rule text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT job_group_rule_known CHECK (rule IN ('all', 'any', 'majority'))
);
COMMENT ON TABLE corral_job_groups IS
    'Jobs fanned out over regions (corral jobs enqueue --regions), rolled up by rule.';

CREATE TABLE corral_job_group_jobs (
    group_id bigint NOT NULL REFERENCES corral_job_groups (id) ON DELETE CASCADE,
    region text NOT NULL,
    job_id bigint NOT NULL,
    CONSTRAINT job_group_jobs_pkey PRIMARY KEY (group_id, region)
);
COMMENT ON TABLE corral_job_group_jobs IS
    'The job of each region of a group; a job purged by retention shows as gone.';
