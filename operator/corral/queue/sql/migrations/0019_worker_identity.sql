-- 0019: a worker's credential and name stay its pod's (security review).
--
-- A pool worker's credential outlived its pod: corral_authenticate_v2 set a
-- row its own drain had finished (preStop, SIGTERM) back to active and
-- renewed the credential for a day, and corral_drain_self_v1 turned the
-- scaler's drain into the worker's own, so whoever copied credential.json
-- out of a pod could bring its row back after a scale-down and claim the
-- pool's jobs for ever. Now a pool worker (pool IS NOT NULL) whose own drain
-- finished (drained by 'self') cannot authenticate again: CR409, and it must
-- enroll afresh with its pool's token (a container restarted inside its
-- live pod does: corral.worker.enrollment). That enrollment, under the same
-- name, retires the drained row. A restart (`corral workers restart`) and a
-- hand-started worker (pool IS NULL) come back as before. The operator
-- removes the rows of a pool's workers whose pods are gone
-- (corral.controller.observed.orphaned_workers).
--
-- Any worker could also steer the autoscaler: authenticate let it rename
-- itself after a busy pod (the scaler maps rows to pods by name) and report
-- drained, so the operator deleted the busy pod; and heartbeat_v4 took any
-- in_flight (2147483647 with concurrency 1), which the scaler counts as
-- demand, pinning the pool at max. Now enroll and authenticate refuse a
-- name another live (active or draining) worker of the same pool holds
-- (CR403), and a heartbeat's in_flight is capped at the worker's
-- concurrency (the operator caps it too, for databases not migrated yet).

CREATE OR REPLACE FUNCTION corral_enroll_v2(
    p_token text, p_name text, p_queues text[], p_concurrency integer, p_version text,
    p_credential_hash text
) RETURNS TABLE (worker_id bigint, region text, pool text)
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_token corral_enrollment_tokens%ROWTYPE;
    v_outside text[];
    v_worker_id bigint;
BEGIN
    SELECT * INTO v_token FROM corral_enrollment_tokens t
     WHERE t.token_hash = corral_hash_secret_v1(p_token)
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'enrollment token is not known' USING ERRCODE = 'CR403',
            HINT = 'mint one with: corral tokens create --region R';
    ELSIF v_token.revoked_at IS NOT NULL THEN
        RAISE EXCEPTION 'enrollment token % was revoked', v_token.display_prefix
            USING ERRCODE = 'CR403';
    ELSIF v_token.expires_at <= now() THEN
        RAISE EXCEPTION 'enrollment token % expired at %', v_token.display_prefix,
            v_token.expires_at USING ERRCODE = 'CR403';
    ELSIF v_token.uses_remaining <= 0 THEN
        RAISE EXCEPTION 'enrollment token % has no uses left', v_token.display_prefix
            USING ERRCODE = 'CR403';
    END IF;
    IF cardinality(p_queues) IS DISTINCT FROM cardinality(ARRAY(SELECT DISTINCT unnest(p_queues)))
       OR coalesce(cardinality(p_queues), 0) = 0 THEN
        RAISE EXCEPTION 'a worker enrolls for one or more distinct queues (got %)', p_queues
            USING ERRCODE = 'CR403';
    END IF;
    IF v_token.queues IS NOT NULL THEN
        v_outside := ARRAY(SELECT q FROM unnest(p_queues) q WHERE q <> ALL (v_token.queues));
        IF cardinality(v_outside) > 0 THEN
            RAISE EXCEPTION 'enrollment token % admits queues %, not %', v_token.display_prefix,
                v_token.queues, v_outside USING ERRCODE = 'CR403',
                HINT = 'serve only the queues of the pool the token was minted for';
        END IF;
    END IF;
    IF v_token.pool IS NOT NULL THEN
        -- A pool's worker is named after its pod: one enrollment per name at a time.
        PERFORM pg_advisory_xact_lock(
            hashtextextended('corral_worker_name:' || v_token.pool || '/' || p_name, 0));
        -- The scaler maps a pool's workers to pods by name: a name held by
        -- another live worker of the pool (not removed, not drained) is
        -- refused, so no worker can pose as a busy pod.
        IF EXISTS (SELECT 1 FROM corral_workers w
                    WHERE w.pool = v_token.pool AND w.name = p_name
                      AND w.state IN ('active', 'draining')) THEN
            RAISE EXCEPTION 'worker name % is held by a live worker of pool %', p_name,
                v_token.pool USING ERRCODE = 'CR403',
                HINT = 'a pool''s worker is named after its pod';
        END IF;
        -- The pod's earlier worker, whose own drain finished, cannot come
        -- back (corral_authenticate_v2): its row is retired.
        UPDATE corral_workers w
           SET state = 'removed', removed_at = now()
         WHERE w.pool = v_token.pool AND w.name = p_name
           AND w.state = 'drained' AND w.drain_requested_by = 'self';
    END IF;
    UPDATE corral_enrollment_tokens t
       SET uses_remaining = t.uses_remaining - 1, last_used_at = now()
     WHERE t.id = v_token.id;
    INSERT INTO corral_workers (name, region, pool, queues, concurrency, version,
                                credential_hash, token_id, enrolled_queues,
                                credential_expires_at)
    VALUES (p_name, v_token.region, v_token.pool, p_queues, p_concurrency, p_version,
            p_credential_hash, v_token.id, v_token.queues, now() + interval '1 day')
    RETURNING corral_workers.id INTO v_worker_id;
    RETURN QUERY SELECT v_worker_id, v_token.region, v_token.pool;
END
$$;

-- corral_authenticate_v2 as in 0010, except that a pool worker whose own
-- drain finished is refused (CR409): its pod is gone or going, and a
-- container restarted inside a live pod enrolls afresh with the pool's token.
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
    v_pool text;
    v_by text;
BEGIN
    v_state := corral_caller_state_v1(p_worker_id, p_credential);
    IF v_state = 'removed' THEN
        RETURN v_state;
    END IF;
    SELECT w.state, w.enrolled_queues, w.pool, w.drain_requested_by
      INTO v_state, v_enrolled, v_pool, v_by
      FROM corral_workers w WHERE w.id = p_worker_id
       FOR UPDATE;
    IF v_state = 'removed' THEN
        RETURN v_state;
    END IF;
    IF v_pool IS NOT NULL AND v_state = 'drained' AND v_by = 'self' THEN
        RAISE EXCEPTION 'worker % of pool % finished its own drain: its credential is retired; '
            'enroll afresh with the pool''s token', p_worker_id, v_pool
            USING ERRCODE = 'CR409',
                  HINT = 'a pod''s worker does so by itself when its enrollment token is mounted';
    END IF;
    IF v_pool IS NOT NULL AND p_name IS NOT NULL THEN
        -- No rename onto a name another live worker of the pool holds (the
        -- scaler maps workers to pods by name; corral_enroll_v2 above).
        PERFORM pg_advisory_xact_lock(
            hashtextextended('corral_worker_name:' || v_pool || '/' || p_name, 0));
        IF EXISTS (SELECT 1 FROM corral_workers w
                    WHERE w.pool = v_pool AND w.name = p_name AND w.id <> p_worker_id
                      AND w.state IN ('active', 'draining')) THEN
            RAISE EXCEPTION 'worker name % is held by a live worker of pool %', p_name, v_pool
                USING ERRCODE = 'CR403', HINT = 'a pool''s worker is named after its pod';
        END IF;
    END IF;
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

-- corral_heartbeat_v4 as in 0016, with in_flight capped at the worker's
-- concurrency (a worker holds at most that many jobs).
CREATE OR REPLACE FUNCTION corral_heartbeat_v4(
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
       SET last_heartbeat = now(), in_flight = least(greatest(p_in_flight, 0), w.concurrency),
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
    UPDATE corral_jobs j
       SET lease_expires_at = now() + make_interval(secs => v_lease_s)
     WHERE j.id = ANY(ARRAY(SELECT h.id FROM corral_jobs h
                             WHERE h.state = 'running' AND h.worker_id = p_worker_id
                               AND h.lease_expires_at
                                   < coalesce(now() + make_interval(secs => p_renew_below_s),
                                              'infinity')
                               AND (p_held IS NULL OR h.id = ANY(p_held))
                               FOR UPDATE SKIP LOCKED));
    IF v_state IN ('draining', 'drained') AND EXISTS (
        SELECT 1 FROM corral_workers w
         WHERE w.id = p_worker_id AND w.drain_requested_by = 'restart'
    ) THEN
        RETURN 'restarting';
    END IF;
    RETURN v_state;
END
$$;
