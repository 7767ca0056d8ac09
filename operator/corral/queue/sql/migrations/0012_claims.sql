-- 0012: a claim's scheduled_for read after the claim, and completions
-- without a per-id pass when the caller holds every job.
--
-- * corral_claim_v4: claim_v3 read each job's schedule occurrence in the
--   snapshot its statement started with, while claim_v2, which it calls,
--   reads the backlog in later snapshots (each of its statements takes its
--   own). A job fired between the two was claimed with scheduled_for NULL,
--   though its occurrence is committed with it. claim_v4 reads the
--   occurrences in a statement of its own, after claim_v2 has returned: it
--   sees every occurrence of a job claim_v2 could see.
-- * corral_complete_v4: complete_v3 checked each id against the kept ones
--   and the lost ones (O(batch^2)) to build its answer. When the caller holds
--   every job (the usual case, checked first anyway) the ids rejected are
--   exactly the ones complete_v2 lost, in the same order.
--
-- The _v3 functions stay for workers of the previous release.

-- A claimed job: corral_claim_v2's row and the occurrence a scheduled job
-- was enqueued for (NULL for any other job). corral_claim_v4 returns it.
CREATE TYPE corral_claimed_v1 AS (
    id bigint, kind text, queue text, payload jsonb, priority smallint, region text,
    attempt integer, max_attempts integer, lease_token bigint, lease_expires_at timestamptz,
    enqueued_at timestamptz, run_at timestamptz, scheduled_for timestamptz
);

CREATE FUNCTION corral_claim_v4(
    p_worker_id bigint, p_credential text, p_queues text[], p_batch integer,
    p_lease_s double precision
) RETURNS SETOF corral_claimed_v1
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_claimed corral_claimed_v1[];
BEGIN
    -- In claim_v2's order (its rows are read in sequence, never sorted).
    SELECT array_agg(ROW(c.*, NULL)::corral_claimed_v1) INTO v_claimed
      FROM corral_claim_v2(p_worker_id, p_credential, p_queues, p_batch, p_lease_s) AS c;
    IF v_claimed IS NULL THEN
        RETURN;
    END IF;
    -- A statement of its own, so a snapshot taken after the claim: a job and
    -- its occurrence are committed together.
    RETURN QUERY
    SELECT j.id, j.kind, j.queue, j.payload, j.priority, j.region, j.attempt, j.max_attempts,
           j.lease_token, j.lease_expires_at, j.enqueued_at, j.run_at,
           (SELECT o.scheduled_for FROM corral_schedule_occurrences o WHERE o.job_id = j.id)
      FROM unnest(v_claimed) WITH ORDINALITY AS j
     ORDER BY j.ordinality;
END
$$;

CREATE FUNCTION corral_complete_v4(
    p_worker_id bigint, p_credential text, p_ids bigint[], p_tokens bigint[], p_results jsonb[]
) RETURNS bigint[]
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    -- complete_v3's holder check first: a batch with a job the caller does
    -- not hold goes through complete_v3's per-id pass (credential and all).
    IF EXISTS (SELECT 1 FROM corral_jobs o
                WHERE o.id = ANY(p_ids) AND o.worker_id IS DISTINCT FROM p_worker_id) THEN
        RETURN corral_complete_v3(p_worker_id, p_credential, p_ids, p_tokens, p_results);
    END IF;
    IF corral_caller_state_v1(p_worker_id, p_credential) = 'removed' THEN
        RAISE EXCEPTION 'worker % was removed from the fleet', p_worker_id
            USING ERRCODE = 'CR401';
    END IF;
    -- The caller holds them all: what complete_v2 lost is the answer.
    RETURN corral_complete_v2(p_ids, p_tokens, p_results);
END
$$;
