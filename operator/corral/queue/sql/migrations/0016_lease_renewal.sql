-- 0016: a heartbeat renews only the leases that need it (issue 16: the
-- server's writes a held job).
--
-- corral_heartbeat_v2/_v3 rewrite the lease of every job the worker holds on
-- every beat: a non-HOT update each (a new row version, a primary-key and a
-- lease-index entry, WAL for all three), once a second per held job by
-- default. A worker of 2,000 jobs that wait on the network for a minute makes
-- 120,000 row versions of those 2,000 jobs.
--
-- corral_heartbeat_v4 takes the lease a beat leaves each job with
-- (p_lease_s, capped at 1 s to 1 h as before) and a threshold
-- (p_renew_below_s): it renews only the leases with less than the threshold
-- left. A worker asks for its --lease plus a slack and renews below its
-- --lease (corral.worker._queue.lease_grant_s): right after each beat every
-- job it named has at least --lease left, as with v3, so a database outage
-- shorter than --lease still costs no job a second run; a held job's row is
-- rewritten once per slack instead of once per beat; and a dead worker's
-- jobs are retried at most the slack later. NULL threshold: every lease, as
-- v3. The _v2/_v3 functions stay for workers of earlier releases, now
-- calling _v4 (below).

CREATE FUNCTION corral_heartbeat_v4(
    p_worker_id bigint, p_credential text, p_in_flight integer, p_lease_s double precision,
    p_held bigint[], p_renew_below_s double precision
) RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_state text;
    v_lease_s double precision := least(greatest(coalesce(p_lease_s, 60), 1), 3600);
BEGIN
    PERFORM corral_relax_ack_v1();
    UPDATE corral_workers w
       SET last_heartbeat = now(), in_flight = greatest(p_in_flight, 0),
           credential_expires_at = CASE WHEN w.state = 'removed' THEN w.credential_expires_at
                                        ELSE now() + interval '1 day' END
     WHERE w.id = p_worker_id
       AND w.credential_hash = encode(sha256(convert_to(p_credential, 'UTF8')), 'hex')
       AND (w.credential_expires_at IS NULL OR w.credential_expires_at > now())
    RETURNING w.state INTO v_state;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'worker % is not enrolled, or its credential is wrong or expired',
            p_worker_id USING ERRCODE = 'CR401';
    END IF;
    IF v_state = 'removed' THEN
        RETURN v_state;
    END IF;
    -- corral_heartbeat_v2's rules (only the jobs named as held; SKIP LOCKED:
    -- a row locked now is being completed, failed or released elsewhere),
    -- and only the leases running low: a range of the lease index
    -- (worker_id, lease_expires_at), so the leases not due are not read.
    UPDATE corral_jobs j
       SET lease_expires_at = now() + make_interval(secs => v_lease_s)
     WHERE j.id = ANY(ARRAY(SELECT h.id FROM corral_jobs h
                             WHERE h.state = 'running' AND h.worker_id = p_worker_id
                               AND h.lease_expires_at
                                   < coalesce(now() + make_interval(secs => p_renew_below_s),
                                              'infinity')
                               AND (p_held IS NULL OR h.id = ANY(p_held))
                               FOR UPDATE SKIP LOCKED));
    -- corral_heartbeat_v3's answer: 'restarting' while `corral workers
    -- restart` asks this worker to drain and exit for its supervisor.
    IF v_state IN ('draining', 'drained') AND EXISTS (
        SELECT 1 FROM corral_workers w
         WHERE w.id = p_worker_id AND w.drain_requested_by = 'restart'
    ) THEN
        RETURN 'restarting';
    END IF;
    RETURN v_state;
END
$$;

-- The beats of earlier releases' workers, through corral_heartbeat_v4 (one
-- body to keep): every lease they name renewed on every beat, as before.
-- Same signatures and answers: _v3 says 'restarting' during a restart, as
-- _v4 does; _v2 answers the registry's own state then.
CREATE OR REPLACE FUNCTION corral_heartbeat_v3(
    p_worker_id bigint, p_credential text, p_in_flight integer, p_lease_s double precision,
    p_held bigint[]
) RETURNS text
LANGUAGE sql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
    SELECT corral_heartbeat_v4(p_worker_id, p_credential, p_in_flight, p_lease_s, p_held, NULL)
$$;

CREATE OR REPLACE FUNCTION corral_heartbeat_v2(
    p_worker_id bigint, p_credential text, p_in_flight integer, p_lease_s double precision,
    p_held bigint[]
) RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_state text;
BEGIN
    v_state := corral_heartbeat_v4(p_worker_id, p_credential, p_in_flight, p_lease_s, p_held,
                                   NULL);
    IF v_state = 'restarting' THEN
        SELECT w.state INTO v_state FROM corral_workers w WHERE w.id = p_worker_id;
    END IF;
    RETURN v_state;
END
$$;
