-- Named statements used by corral.queue.client. Loaded once per process.
-- Hot-path statements call the versioned database functions (corral_*_v1)
-- so that old and new workers can run side by side during an upgrade.

-- name: enqueue_v1
SELECT * FROM corral_enqueue_v1(
    %s::text[], %s::text[], %s::text[]::jsonb[], %s::int4[], %s::text[],
    %s::timestamptz[], %s::timestamptz[], %s::int4[], %s::text[])

-- name: enqueue_v2
-- enqueue_v1 plus each job's result queue (used only when one is named).
SELECT * FROM corral_enqueue_v2(
    %s::text[], %s::text[], %s::text[]::jsonb[], %s::int4[], %s::text[],
    %s::timestamptz[], %s::timestamptz[], %s::int4[], %s::text[], %s::text[])

-- name: claim_v2
-- Held to the worker's enrollment: its queues and region; batch and lease capped.
SELECT * FROM corral_claim_v2(%s::int8, %s::text, %s::text[], %s::int4, %s::float8)

-- name: claim_v3
-- claim_v2's rows plus the schedule occurrence each job was enqueued for.
SELECT * FROM corral_claim_v3(%s::int8, %s::text, %s::text[], %s::int4, %s::float8)

-- name: claim_v4
-- claim_v3's rows, each job's occurrence read after the claim (0012).
SELECT * FROM corral_claim_v4(%s::int8, %s::text, %s::text[], %s::int4, %s::float8)

-- name: claim_v5
-- claim_v4's rows in one pass: the occurrence read in the claim's UPDATE (0013).
SELECT * FROM corral_claim_v5(%s::int8, %s::text, %s::text[], %s::int4, %s::float8)

-- name: complete_v5
-- complete_v4's answer; the holder checked on the rows deleted, not before (0013).
SELECT corral_complete_v5(%s::int8, %s::text, %s::int8[], %s::int8[], %s::text[]::jsonb[])

-- name: complete_v4
-- complete_v3's answer without a per-id pass when the caller holds every job.
SELECT corral_complete_v4(%s::int8, %s::text, %s::int8[], %s::int8[], %s::text[]::jsonb[])

-- name: complete_v3
-- A worker's completions: credential checked once, only jobs it holds.
SELECT corral_complete_v3(%s::int8, %s::text, %s::int8[], %s::int8[], %s::text[]::jsonb[])

-- name: fail_v2
SELECT corral_fail_v2(%s::int8, %s::text, %s::int8[], %s::int8[], %s::text[], %s::text[], %s::bool[])

-- name: release_v2
SELECT corral_release_v2(%s::int8, %s::text, %s::int8[], %s::int8[])

-- name: heartbeat_v2
SELECT corral_heartbeat_v2(%s::int8, %s::text, %s::int4, %s::float8, %s::int8[])

-- name: heartbeat_v3
-- heartbeat_v2, answering 'restarting' while a restart is asked for.
SELECT corral_heartbeat_v3(%s::int8, %s::text, %s::int4, %s::float8, %s::int8[])

-- name: heartbeat_v4
-- heartbeat_v3, renewing only the leases with less than the threshold left (0016).
SELECT corral_heartbeat_v4(%s::int8, %s::text, %s::int4, %s::float8, %s::int8[], %s::float8)

-- name: enroll_v2
SELECT * FROM corral_enroll_v2(%s::text, %s::text, %s::text[], %s::int4, %s::text, %s::text)

-- name: authenticate_v2
SELECT corral_authenticate_v2(%s::int8, %s::text, %s::text, %s::text[], %s::int4, %s::text)

-- name: mark_drained_v1
SELECT corral_mark_drained_v1(%s::int8, %s::text)

-- name: purge_finished_v2
-- A worker's retention batch: a day at least; NULL when another process is purging.
SELECT corral_purge_finished_v2(%s::int8, %s::text, %s::float8, %s::int4)

-- name: complete_v1
SELECT corral_complete_v1(%s::int8[], %s::int8[])

-- name: complete_v2
-- Completions of which at least one carries a result (JSON text, NULL: none).
SELECT corral_complete_v2(%s::int8[], %s::int8[], %s::text[]::jsonb[])

-- name: fail_v1
SELECT corral_fail_v1(%s::int8[], %s::int8[], %s::text[], %s::text[], %s::bool[])

-- name: release_v1
SELECT corral_release_v1(%s::int8[], %s::int8[])

-- name: drain_self_v1
SELECT corral_drain_self_v1(%s::int8, %s::text)

-- name: purge_finished_v1
-- NULL when another process is purging.
SELECT corral_purge_finished_v1(%s::float8, %s::int4)

-- name: reap_v1
-- NULL when another process holds the reaper lock.
SELECT corral_reap_v1(%s::int4)

-- name: promote_due_v1
SELECT corral_promote_due_v1(%s::int4)

-- name: request_drain
-- An admin drain also takes over a drain the worker began itself, so that it
-- outlasts a restart.
UPDATE corral_workers
   SET state = CASE WHEN state = 'active' THEN 'draining' ELSE state END,
       drain_requested_at = CASE WHEN state = 'active' THEN now() ELSE drain_requested_at END,
       drain_requested_by = 'admin'
 WHERE id = %s AND state <> 'removed'

-- name: request_restart
-- Drain, then exit for the supervisor to start the worker again; takes over
-- any drain under way (the worker exits once drained).
UPDATE corral_workers
   SET state = CASE WHEN state = 'active' THEN 'draining' ELSE state END,
       drain_requested_at = CASE WHEN state = 'active' THEN now() ELSE drain_requested_at END,
       drain_requested_by = 'restart'
 WHERE id = %s AND state <> 'removed'

-- name: resume_worker
-- Undo a drain the registry asked for (an admin's, the scaler's, a restart's)
-- that has not finished: a draining row, or a drained one of a pool worker
-- (it stays up drained; a worker outside a pool exits once drained).
UPDATE corral_workers
   SET state = 'active', drain_requested_at = NULL, drained_at = NULL,
       drain_requested_by = NULL
 WHERE id = %s AND drain_requested_by IN ('admin', 'scaler', 'restart')
   AND (state = 'draining'
        OR (state = 'drained' AND pool IS NOT NULL AND drain_requested_by <> 'restart'))
RETURNING id

-- name: remove_worker
-- A removed worker's running jobs get their leases expired so the reaper
-- retries them now instead of waiting out the lease.
WITH w AS (
    UPDATE corral_workers SET state = 'removed', removed_at = now()
     WHERE id = %(id)s AND state <> 'removed'
    RETURNING id
), j AS (
    UPDATE corral_jobs SET lease_expires_at = now()
     WHERE id = ANY(ARRAY(SELECT h.id FROM corral_jobs h
                           WHERE h.state = 'running' AND h.worker_id = %(id)s
                             FOR UPDATE SKIP LOCKED))
    RETURNING id
)
SELECT (SELECT count(*) FROM w), (SELECT count(*) FROM j)

-- name: remove_token_workers
-- The response to a leaked enrollment token (`corral tokens revoke
-- --remove-workers`): revoke it and remove every worker it enrolled; their
-- running jobs get their leases expired (as remove_worker). Admin only.
WITH t AS (
    UPDATE corral_enrollment_tokens SET revoked_at = coalesce(revoked_at, now())
     WHERE id = %(id)s
    RETURNING id
), w AS (
    UPDATE corral_workers SET state = 'removed', removed_at = now()
     WHERE token_id IN (SELECT id FROM t) AND state <> 'removed'
    RETURNING id
), j AS (
    UPDATE corral_jobs SET lease_expires_at = now()
     WHERE id = ANY(ARRAY(SELECT h.id FROM corral_jobs h
                           WHERE h.state = 'running' AND h.worker_id IN (SELECT id FROM w)
                             FOR UPDATE SKIP LOCKED))
    RETURNING id
)
SELECT (SELECT count(*) FROM t), (SELECT count(*) FROM w), (SELECT count(*) FROM j)

-- name: get_worker
SELECT id, name, region, pool, queues, concurrency, state, in_flight, last_heartbeat,
       version, enrolled_at, drain_requested_at, drained_at, removed_at, drain_requested_by,
       token_id
  FROM corral_workers
 WHERE id = %s

-- name: list_workers
SELECT id, name, region, pool, queues, concurrency, state, in_flight, last_heartbeat,
       version, enrolled_at, drain_requested_at, drained_at, removed_at, drain_requested_by,
       token_id
  FROM corral_workers
 WHERE %s OR state <> 'removed'
 ORDER BY id

-- name: get_job
SELECT id, kind, queue, payload, priority, region, state, run_at, expires_at, attempt,
       max_attempts, dedupe_key, worker_id, lease_expires_at, last_error, last_error_reason,
       enqueued_at, started_at, NULL::timestamptz AS finished_at, NULL::jsonb AS result,
       (SELECT o.scheduled_for FROM corral_schedule_occurrences o
         WHERE o.job_id = %(id)s LIMIT 1) AS scheduled_for, result_queue
  FROM corral_jobs WHERE id = %(id)s
UNION ALL
SELECT id, kind, queue, payload, priority, region, state, run_at, expires_at, attempt,
       max_attempts, dedupe_key, worker_id, NULL::timestamptz, last_error, last_error_reason,
       enqueued_at, started_at, finished_at, result,
       (SELECT o.scheduled_for FROM corral_schedule_occurrences o
         WHERE o.job_id = %(id)s LIMIT 1), result_queue
  FROM corral_jobs_finished WHERE id = %(id)s

-- name: browse_jobs
-- `corral jobs list` and the dashboard's job browser: newest first, keyset-paginated by id (before),
-- filtered by queue, kind, state, region and text in the last error. Each
-- table is read backwards along its primary key, so a page costs O(page)
-- whatever the table holds, unless a filter matches almost nothing; a state
-- filter skips the table that cannot hold that state.
SELECT jobs.*, (SELECT o.scheduled_for FROM corral_schedule_occurrences o
                   WHERE o.job_id = jobs.id LIMIT 1) AS scheduled_for
  FROM (
SELECT * FROM (
    SELECT id, kind, queue, payload, priority, region, state, run_at, expires_at, attempt,
           max_attempts, dedupe_key, worker_id, lease_expires_at, last_error,
           last_error_reason, enqueued_at, started_at, NULL::timestamptz AS finished_at,
           NULL::jsonb AS result
      FROM corral_jobs
     WHERE (%(queue)s::text IS NULL OR queue = %(queue)s)
       AND (%(kind)s::text IS NULL OR kind = %(kind)s)
       AND (%(state)s::text IS NULL OR state = %(state)s)
       AND (%(region)s::text IS NULL OR region = %(region)s)
       AND (%(error)s::text IS NULL OR strpos(lower(last_error), lower(%(error)s)) > 0)
       AND (%(before)s::bigint IS NULL OR id < %(before)s)
       AND (%(state)s::text IS NULL OR %(state)s IN ('scheduled', 'pending', 'running'))
     ORDER BY id DESC LIMIT %(limit)s
) hot
UNION ALL
SELECT * FROM (
    SELECT id, kind, queue, payload, priority, region, state, run_at, expires_at, attempt,
           max_attempts, dedupe_key, worker_id, NULL::timestamptz, last_error, last_error_reason,
           enqueued_at, started_at, finished_at, result
      FROM corral_jobs_finished
     WHERE (%(queue)s::text IS NULL OR queue = %(queue)s)
       AND (%(kind)s::text IS NULL OR kind = %(kind)s)
       AND (%(state)s::text IS NULL OR state = %(state)s)
       AND (%(region)s::text IS NULL OR region = %(region)s)
       AND (%(error)s::text IS NULL OR strpos(lower(last_error), lower(%(error)s)) > 0)
       AND (%(before)s::bigint IS NULL OR id < %(before)s)
       AND (%(state)s::text IS NULL OR %(state)s IN ('completed', 'dead', 'cancelled', 'expired'))
     ORDER BY id DESC LIMIT %(limit)s
) finished
ORDER BY id DESC LIMIT %(limit)s
) jobs
ORDER BY jobs.id DESC

-- name: requeue_dead_jobs
-- Every dead job a browser filter matches (at most limit of them) goes back to
-- pending with a fresh budget, like requeue_job; the dead index finds them.
WITH gone AS (
    DELETE FROM corral_jobs_finished
     WHERE id IN (
        SELECT id FROM corral_jobs_finished
         WHERE state = 'dead'
           AND (%(queue)s::text IS NULL OR queue = %(queue)s)
           AND (%(kind)s::text IS NULL OR kind = %(kind)s)
           AND (%(region)s::text IS NULL OR region = %(region)s)
           AND (%(error)s::text IS NULL OR strpos(lower(last_error), lower(%(error)s)) > 0)
         ORDER BY id LIMIT %(limit)s
         FOR UPDATE SKIP LOCKED)
    RETURNING *
), back AS (
    INSERT INTO corral_jobs (id, kind, queue, payload, priority, region, state, run_at,
        expires_at, attempt, max_attempts, dedupe_key, last_error, last_error_reason,
        enqueued_at)
    SELECT id, kind, queue, payload, priority, region, 'pending', now(),
           CASE WHEN expires_at <= now() THEN NULL ELSE expires_at END, 0, max_attempts,
           dedupe_key, last_error, last_error_reason, enqueued_at
      FROM gone
    RETURNING id, queue
), woken AS (
    SELECT DISTINCT queue FROM back
)
SELECT (SELECT count(*) FROM back), (SELECT count(pg_notify('corral_jobs', queue)) FROM woken)

-- name: cancel_job
-- Only a job that has not started can be cancelled; it moves to the finished table.
WITH gone AS (
    DELETE FROM corral_jobs WHERE id = %s AND state IN ('scheduled', 'pending')
    RETURNING *
)
INSERT INTO corral_jobs_finished (id, kind, queue, payload, priority, region, state, run_at,
    expires_at, attempt, max_attempts, dedupe_key, worker_id, last_error, last_error_reason,
    enqueued_at, started_at)
SELECT id, kind, queue, payload, priority, region, 'cancelled', run_at, expires_at, attempt,
       max_attempts, dedupe_key, worker_id, last_error, last_error_reason, enqueued_at,
       started_at
  FROM gone
RETURNING id

-- name: requeue_job
-- A dead, cancelled or expired job goes back to pending with a fresh attempt
-- budget; its last error stays visible until the next attempt overwrites it.
WITH gone AS (
    DELETE FROM corral_jobs_finished
     WHERE id = %s AND state IN ('dead', 'cancelled', 'expired')
    RETURNING *
), back AS (
    INSERT INTO corral_jobs (id, kind, queue, payload, priority, region, state, run_at,
        expires_at, attempt, max_attempts, dedupe_key, last_error, last_error_reason,
        enqueued_at)
    SELECT id, kind, queue, payload, priority, region, 'pending', now(),
           CASE WHEN expires_at <= now() THEN NULL ELSE expires_at END, 0, max_attempts,
           dedupe_key, last_error, last_error_reason, enqueued_at
      FROM gone
    RETURNING id, queue
)
SELECT id, pg_notify('corral_jobs', queue) FROM back

-- name: set_paused
INSERT INTO corral_queues AS q (name, paused, paused_reason, paused_at)
VALUES (%(queue)s, %(paused)s, %(reason)s, CASE WHEN %(paused)s THEN now() END)
ON CONFLICT (name) DO UPDATE
   SET paused = excluded.paused, paused_reason = excluded.paused_reason,
       paused_at = CASE WHEN excluded.paused THEN coalesce(
                            CASE WHEN q.paused THEN q.paused_at END, now()) END,
       updated_at = now()
RETURNING name, paused, paused_reason, paused_at

-- name: resume_all
-- Resuming everything clears every queue's pause, not just the `*` switch.
UPDATE corral_queues
   SET paused = false, paused_reason = NULL, paused_at = NULL, updated_at = now()
 WHERE paused

-- name: wake_all
SELECT pg_notify('corral_jobs', '*')

-- name: wake_queue
SELECT pg_notify('corral_jobs', %s)

-- name: dispatch_status
SELECT name, paused, paused_reason, paused_at FROM corral_queues
 WHERE %(queue)s::text IS NULL OR name IN (%(queue)s, '*')
 ORDER BY name = '*' DESC, name

-- name: set_queue_defaults
-- NULL leaves a setting as it is; a negative cap (UNCAPPED) removes the cap.
INSERT INTO corral_queues AS q (name, max_attempts, retry_base_s, retry_max_s, keep_completed,
                                max_dead, max_completed)
VALUES (%(queue)s, %(max_attempts)s, coalesce(%(retry_base_s)s, 1), coalesce(%(retry_max_s)s, 3600),
        coalesce(%(keep_completed)s, true),
        CASE WHEN %(max_dead)s::int4 IS NULL THEN 5000
             WHEN %(max_dead)s::int4 >= 0 THEN %(max_dead)s::int4 END,
        CASE WHEN %(max_completed)s::int4 >= 0 THEN %(max_completed)s::int4 END)
ON CONFLICT (name) DO UPDATE
   SET max_attempts = coalesce(excluded.max_attempts, q.max_attempts),
       retry_base_s = coalesce(%(retry_base_s)s, q.retry_base_s),
       retry_max_s = coalesce(%(retry_max_s)s, q.retry_max_s),
       keep_completed = coalesce(%(keep_completed)s, q.keep_completed),
       max_dead = CASE WHEN %(max_dead)s::int4 IS NULL THEN q.max_dead
                       WHEN %(max_dead)s::int4 >= 0 THEN %(max_dead)s::int4 END,
       max_completed = CASE WHEN %(max_completed)s::int4 IS NULL THEN q.max_completed
                            WHEN %(max_completed)s::int4 >= 0 THEN %(max_completed)s::int4 END,
       updated_at = now()

-- name: list_queues
-- Queues with settings or jobs; one without a row shows the columns' defaults.
SELECT n.name, q.name IS NOT NULL, q.max_attempts, coalesce(q.retry_base_s, 1),
       coalesce(q.retry_max_s, 3600), coalesce(q.keep_completed, true),
       CASE WHEN q.name IS NULL THEN 5000 ELSE q.max_dead END, q.max_completed,
       coalesce(q.paused, false)
  FROM (SELECT name FROM corral_queues WHERE name <> '*'
        UNION SELECT queue FROM corral_jobs
        UNION SELECT queue FROM corral_jobs_finished) n
  LEFT JOIN corral_queues q ON q.name = n.name
 ORDER BY n.name

-- name: stats_hot
SELECT queue, state, count(*),
       extract(epoch FROM now() - min(run_at) FILTER (
           WHERE state = 'pending' OR (state = 'scheduled' AND run_at <= now())))
  FROM corral_jobs GROUP BY queue, state

-- name: stats_finished_recent
-- The dashboard's Overview: completed and dead jobs per queue over the last
-- %(minutes)s minutes, summed from the per-minute counters (O(queues x
-- minutes)), never a count over the finished table.
SELECT queue, 'completed', sum(completed) FROM corral_throughput_minutes
 WHERE minute > now() - make_interval(mins => %(minutes)s) GROUP BY queue
UNION ALL
SELECT queue, 'dead', sum(dead) FROM corral_throughput_minutes
 WHERE minute > now() - make_interval(mins => %(minutes)s) GROUP BY queue

-- name: stats_finished
SELECT queue, state, count(*) FROM corral_jobs_finished GROUP BY queue, state

-- name: depth
-- Every count reads a partial index and stops at the cap: cheap enough for
-- an autoscaler that asks every second, whatever the backlog. Due scheduled
-- jobs count as ready: claims promote them, but with no worker running
-- nobody would, and the autoscaler must still see them to scale up from zero.
SELECT
    (SELECT count(*) FROM (
        SELECT 1 FROM corral_jobs
         WHERE state = 'pending' AND queue = ANY(%(queues)s::text[])
           AND region IN ('', %(region)s)
         LIMIT %(cap)s) p)
  + (SELECT count(*) FROM (
        SELECT 1 FROM corral_jobs
         WHERE state = 'scheduled' AND run_at <= now() AND queue = ANY(%(queues)s::text[])
           AND region IN ('', %(region)s)
         LIMIT %(cap)s) d),
    (SELECT count(*) FROM (
        SELECT 1 FROM corral_jobs
         WHERE state = 'running' AND queue = ANY(%(queues)s::text[])
           AND region IN ('', %(region)s)
         LIMIT %(cap)s) r)

-- name: purge_finished
-- One batch of retention; the caller loops until a batch comes back short.
DELETE FROM corral_jobs_finished
 WHERE id IN (SELECT id FROM corral_jobs_finished
               WHERE finished_at < now() - make_interval(secs => %s::float8)
               LIMIT %s::int4)

-- name: purge_workers
-- Registry retention, one batch: workers removed, or silent (their pod gone
-- without a word), for longer than the age. Finished jobs keep their
-- worker_id; it just no longer resolves to a name.
DELETE FROM corral_workers
 WHERE id IN (SELECT id FROM corral_workers
               WHERE CASE WHEN state = 'removed' THEN removed_at
                          ELSE coalesce(last_heartbeat, enrolled_at) END
                     < now() - make_interval(secs => %s::float8)
               LIMIT %s::int4)

-- name: purge_tokens
-- Token retention, one batch: tokens dead (revoked, expired or used up) for
-- longer than the age. least() skips NULLs: the earliest way it died counts.
-- Workers enrolled with one keep running (token_id is set to NULL).
DELETE FROM corral_enrollment_tokens
 WHERE id IN (SELECT id FROM corral_enrollment_tokens
               WHERE least(revoked_at, expires_at,
                           CASE WHEN uses_remaining = 0
                                THEN coalesce(last_used_at, created_at) END)
                     < now() - make_interval(secs => %s::float8)
               LIMIT %s::int4)

-- name: insert_token
INSERT INTO corral_enrollment_tokens (token_hash, display_prefix, region, pool, expires_at,
                                      uses_remaining, queues)
VALUES (%s, %s, %s, %s, now() + make_interval(secs => %s::float8), %s, %s::text[])
RETURNING id, display_prefix, region, pool, expires_at, uses_remaining, created_at,
          last_used_at, revoked_at

-- name: list_tokens
SELECT id, display_prefix, region, pool, expires_at, uses_remaining, created_at,
       last_used_at, revoked_at
  FROM corral_enrollment_tokens
 WHERE %(all)s OR (revoked_at IS NULL AND expires_at > now() AND uses_remaining > 0)
 ORDER BY id

-- name: get_token
SELECT id, display_prefix, region, pool, expires_at, uses_remaining, created_at,
       last_used_at, revoked_at
  FROM corral_enrollment_tokens
 WHERE id = %s

-- name: revoke_token
UPDATE corral_enrollment_tokens SET revoked_at = coalesce(revoked_at, now())
 WHERE id = %s OR display_prefix = %s
RETURNING id

-- name: backlog
-- What the autoscaler reads for one pool at every evaluation: jobs ready in
-- all of its queues (the DEPTH column) and in those not paused (its demand).
-- Each count reads a partial index and stops at the cap. Due scheduled jobs
-- count as ready: claims promote them, but a pool at zero has no worker to.
-- So do jobs due within the lead (the pool's activationLeadSeconds), so that
-- a pool at zero has a worker up when a delayed job or an occurrence is due.
WITH live AS (
    SELECT coalesce(array_agg(q.name), '{}') AS queues
      FROM unnest(%(queues)s::text[]) AS q(name)
     WHERE NOT EXISTS (SELECT 1 FROM corral_queues p WHERE p.paused AND p.name IN (q.name, '*'))
)
SELECT
    (SELECT count(*) FROM (
        SELECT 1 FROM corral_jobs
         WHERE state = 'pending' AND queue = ANY(%(queues)s::text[])
           AND region IN ('', %(region)s)
         LIMIT %(cap)s) p)
  + (SELECT count(*) FROM (
        SELECT 1 FROM corral_jobs
         WHERE state = 'scheduled'
           AND run_at <= now() + make_interval(secs => %(lead)s::float8) AND queue = ANY(%(queues)s::text[])
           AND region IN ('', %(region)s)
         LIMIT %(cap)s) d),
    (SELECT count(*) FROM (
        SELECT 1 FROM corral_jobs
         WHERE state = 'pending' AND queue = ANY((SELECT l.queues FROM live l)::text[])
           AND region IN ('', %(region)s)
         LIMIT %(cap)s) p)
  + (SELECT count(*) FROM (
        SELECT 1 FROM corral_jobs
         WHERE state = 'scheduled'
           AND run_at <= now() + make_interval(secs => %(lead)s::float8) AND queue = ANY((SELECT l.queues FROM live l)::text[])
           AND region IN ('', %(region)s)
         LIMIT %(cap)s) d)

-- name: flow
-- Target-wait autoscaling: over the last window, how many jobs became ready
-- in a pool's queues (enqueued, not for later) and how long completed ones
-- ran. Finished rows are found through the BRIN index on finished_at.
SELECT
    (SELECT count(*) FROM corral_jobs
      WHERE enqueued_at > now() - make_interval(secs => %(window)s::float8)
        AND run_at <= enqueued_at + interval '1 second'
        AND queue = ANY(%(queues)s::text[]) AND region IN ('', %(region)s))
  + (SELECT count(*) FROM corral_jobs_finished
      WHERE finished_at > now() - make_interval(secs => %(window)s::float8)
        AND enqueued_at > now() - make_interval(secs => %(window)s::float8)
        AND run_at <= enqueued_at + interval '1 second'
        AND queue = ANY(%(queues)s::text[]) AND region IN ('', %(region)s)),
    (SELECT count(*) FROM corral_jobs_finished
      WHERE finished_at > now() - make_interval(secs => %(window)s::float8)
        AND state = 'completed' AND started_at IS NOT NULL
        AND queue = ANY(%(queues)s::text[]) AND region IN ('', %(region)s)),
    (SELECT avg(extract(epoch FROM finished_at - started_at)) FROM corral_jobs_finished
      WHERE finished_at > now() - make_interval(secs => %(window)s::float8)
        AND state = 'completed' AND started_at IS NOT NULL
        AND queue = ANY(%(queues)s::text[]) AND region IN ('', %(region)s))

-- name: pool_workers
-- in_flight is the larger of what the worker last reported and the running
-- jobs it holds now (corral_jobs_lease_idx): a claim counts at once, not at
-- the next heartbeat, so demand cannot dip between the two and remove a pod.
SELECT w.id, w.name, w.region, w.pool, w.queues, w.concurrency, w.state,
       greatest(w.in_flight, (SELECT count(*) FROM corral_jobs j
                               WHERE j.worker_id = w.id AND j.state = 'running'))::int4,
       w.last_heartbeat, w.version, w.enrolled_at, w.drain_requested_at, w.drained_at,
       w.removed_at, w.drain_requested_by, w.token_id
  FROM corral_workers w
 WHERE w.pool = %s AND w.state <> 'removed'
 ORDER BY w.id

-- name: scaler_drain
-- The operator drains workers it is about to remove (only active ones: a
-- drain someone else asked for stays theirs).
UPDATE corral_workers
   SET state = 'draining', drain_requested_at = now(), drain_requested_by = 'scaler'
 WHERE id = ANY(%s::int8[]) AND state = 'active'
RETURNING id

-- name: scaler_undrain
-- New demand needs workers the operator was draining: back to active. Only
-- the scaler's own drains; the worker resumes claiming at its next heartbeat.
UPDATE corral_workers
   SET state = 'active', drain_requested_at = NULL, drained_at = NULL,
       drain_requested_by = NULL
 WHERE id = ANY(%s::int8[]) AND drain_requested_by = 'scaler'
   AND state IN ('draining', 'drained')
RETURNING id

-- name: interruptions
SELECT job_id, worker_id, attempt, reason, at FROM corral_job_interruptions
 WHERE %(job)s::int8 IS NULL OR job_id = %(job)s
 ORDER BY id

-- name: due_schedules_v1
-- The firing pass (admin): due schedules, locked, with the server's clock.
SELECT * FROM corral_due_schedules_v1(%s::int4, %s::float8)

-- name: worker_due_schedules_v1
SELECT * FROM corral_worker_due_schedules_v1(%s::int8, %s::text, %s::int4, %s::float8)

-- name: fire_schedule_v1
SELECT corral_fire_schedule_v1(%s::text, %s::timestamptz[], %s::timestamptz[], %s::timestamptz)

-- name: worker_fire_schedule_v1
SELECT corral_worker_fire_schedule_v1(%s::int8, %s::text, %s::text, %s::timestamptz[],
                                      %s::timestamptz[], %s::timestamptz)

-- name: lock_schedule
-- create_schedule: the row as it is (locked until the upsert), and the clock
-- (the worker's declare_schedule: corral_worker_lock_schedule_v1, same columns).
SELECT s.name, s.kind, s.payload, s.every_s, s.cron, s.timezone, s.queue, s.priority,
       s.region, s.max_attempts, s.start_at, s.end_at, s.catch_up, s.overlap, s.jitter_s,
       s.created_at, now()
  FROM corral_schedules s WHERE s.name = %(name)s
   FOR UPDATE

-- name: db_now
SELECT now()

-- name: upsert_schedule
INSERT INTO corral_schedules AS s (name, kind, payload, every_s, cron, timezone, queue, priority,
                                   region, max_attempts, start_at, end_at, catch_up, overlap,
                                   jitter_s, next_at)
VALUES (%(name)s, %(kind)s, %(payload)s::jsonb, %(every_s)s, %(cron)s, %(timezone)s, %(queue)s,
        %(priority)s, %(region)s, %(max_attempts)s, %(start_at)s, %(end_at)s, %(catch_up)s,
        %(overlap)s, %(jitter_s)s, %(next_at)s)
ON CONFLICT (name) DO UPDATE
   SET kind = EXCLUDED.kind, payload = EXCLUDED.payload, every_s = EXCLUDED.every_s,
       cron = EXCLUDED.cron, timezone = EXCLUDED.timezone, queue = EXCLUDED.queue,
       priority = EXCLUDED.priority, region = EXCLUDED.region,
       max_attempts = EXCLUDED.max_attempts, start_at = EXCLUDED.start_at,
       end_at = EXCLUDED.end_at, catch_up = EXCLUDED.catch_up, overlap = EXCLUDED.overlap,
       jitter_s = EXCLUDED.jitter_s, next_at = EXCLUDED.next_at, updated_at = now()

-- name: get_schedule
SELECT s.name, s.kind, s.payload, s.every_s, s.cron, s.timezone, s.queue, s.priority, s.region,
       s.max_attempts, s.start_at, s.end_at, s.catch_up, s.overlap, s.jitter_s, s.paused,
       s.next_at, s.last_occurrence, s.last_job_id, coalesce(j.state, f.state), s.created_at,
       s.updated_at
  FROM corral_schedules s
  LEFT JOIN corral_jobs j ON j.id = s.last_job_id
  LEFT JOIN corral_jobs_finished f ON f.id = s.last_job_id
 WHERE %(name)s::text IS NULL OR s.name = %(name)s
 ORDER BY s.name

-- name: set_schedule_paused
UPDATE corral_schedules SET paused = %(paused)s, updated_at = now()
 WHERE name = %(name)s
RETURNING name

-- name: delete_schedule
-- The ledger stays (retention deletes it with the jobs): a schedule created
-- again under this name never fires an occurrence that already fired.
DELETE FROM corral_schedules WHERE name = %(name)s RETURNING name

-- name: run_schedule_now_v1
SELECT corral_run_schedule_now_v1(%s::text)

-- name: worker_lock_schedule_v1
SELECT * FROM corral_worker_lock_schedule_v1(%s::int8, %s::text, %s::text)

-- name: worker_declare_schedule_v1
SELECT corral_worker_declare_schedule_v1(
    %(worker_id)s::int8, %(credential)s::text, %(name)s, %(kind)s, %(payload)s::jsonb,
    %(every_s)s, %(cron)s, %(timezone)s, %(queue)s, %(priority)s, %(region)s,
    %(max_attempts)s, %(start_at)s, %(end_at)s, %(catch_up)s, %(overlap)s, %(jitter_s)s,
    %(next_at)s)

-- name: served_regions
-- The regions a job may be enqueued for without allow_empty_region: a live
-- worker (a heartbeat, or an enrollment, within LIVE_WORKER_S), or a pool's
-- usable enrollment token (the pool can start a worker: scaled to zero).
SELECT region FROM corral_workers
 WHERE state <> 'removed'
   AND coalesce(last_heartbeat, enrolled_at) > now() - make_interval(secs => %s::float8)
UNION
SELECT region FROM corral_enrollment_tokens
 WHERE pool IS NOT NULL AND revoked_at IS NULL AND expires_at > now() AND uses_remaining > 0
ORDER BY 1

-- name: served_lanes
-- What runs where, for the same check by queue: each live worker's region and
-- queues, and each usable pool token's region and the queues it admits (NULL:
-- any). One row per worker or token.
SELECT region, queues FROM corral_workers
 WHERE state <> 'removed'
   AND coalesce(last_heartbeat, enrolled_at) > now() - make_interval(secs => %s::float8)
UNION ALL
SELECT region, queues FROM corral_enrollment_tokens
 WHERE pool IS NOT NULL AND revoked_at IS NULL AND expires_at > now() AND uses_remaining > 0

-- name: regions
-- Every region with workers, a pool's token or jobs waiting: live workers,
-- pools (of workers and of tokens), depth (pending, or scheduled and due).
WITH w AS (
    SELECT region,
           count(*) FILTER (WHERE coalesce(last_heartbeat, enrolled_at)
                                  > now() - make_interval(secs => %(live_s)s::float8)) AS live,
           array_agg(DISTINCT pool) FILTER (WHERE pool IS NOT NULL) AS pools
      FROM corral_workers WHERE state <> 'removed' GROUP BY region
), t AS (
    SELECT region, array_agg(DISTINCT pool) AS pools FROM corral_enrollment_tokens
     WHERE pool IS NOT NULL AND revoked_at IS NULL AND expires_at > now()
       AND uses_remaining > 0
     GROUP BY region
), j AS (
    SELECT region, count(*) AS depth FROM corral_jobs
     WHERE region <> '' AND (state = 'pending' OR (state = 'scheduled' AND run_at <= now()))
     GROUP BY region
)
SELECT r.region, coalesce(w.live, 0)::int8,
       ARRAY(SELECT DISTINCT p FROM unnest(coalesce(w.pools, '{}') || coalesce(t.pools, '{}')) p
              ORDER BY 1),
       coalesce(j.depth, 0)::int8, t.region IS NOT NULL
  FROM (SELECT region FROM w UNION SELECT region FROM t UNION SELECT region FROM j) r
  LEFT JOIN w ON w.region = r.region
  LEFT JOIN t ON t.region = r.region
  LEFT JOIN j ON j.region = r.region
 ORDER BY r.region

-- name: keeps_completed
-- Whether a queue keeps its completed jobs (no settings row: it does).
SELECT coalesce((SELECT keep_completed FROM corral_queues WHERE name = %s), true)

-- name: insert_group
INSERT INTO corral_job_groups (kind, rule) VALUES (%s, %s) RETURNING id

-- name: insert_group_jobs
INSERT INTO corral_job_group_jobs (group_id, region, job_id)
SELECT %s, r, j FROM unnest(%s::text[], %s::int8[]) AS x(r, j)

-- name: get_group
-- A job purged by retention has no state (NULL).
SELECT g.id, g.kind, g.rule, g.created_at, m.region, m.job_id,
       coalesce(j.state, f.state), coalesce(j.attempt, f.attempt),
       coalesce(j.last_error, f.last_error)
  FROM corral_job_groups g
  LEFT JOIN corral_job_group_jobs m ON m.group_id = g.id
  LEFT JOIN corral_jobs j ON j.id = m.job_id
  LEFT JOIN corral_jobs_finished f ON f.id = m.job_id
 WHERE g.id = %s
 ORDER BY m.region

-- name: rollup_throughput
-- Fold the finished rows since the last rollup into the per-minute counters
-- (and sample depth once a minute): one caller at a time, each row once,
-- at most %(limit)s rows a call.
SELECT corral_rollup_throughput_v1(%(limit)s::int4)

-- name: worker_rollup_throughput
-- A worker's pass: NULL when another process is rolling up.
SELECT corral_worker_rollup_throughput_v1(%(worker)s, %(credential)s, %(limit)s::int4)

-- name: throughput
-- The last %(minutes)s minutes of counters (this minute included): reads
-- O(queues x minutes) rows of the counters' primary key.
SELECT minute, queue, completed, failed, dead
  FROM corral_throughput_minutes
 WHERE minute > date_trunc('minute', now()) - make_interval(mins => %(minutes)s::int4)
   AND completed + failed + dead > 0
 ORDER BY minute, queue

-- name: depth_history
SELECT minute, queue, waiting
  FROM corral_depth_minutes
 WHERE minute > date_trunc('minute', now()) - make_interval(mins => %(minutes)s::int4)
 ORDER BY minute, queue

-- name: record_audit
INSERT INTO corral_audit (actor, action, target, detail)
VALUES (%s, %s, %s, %s::jsonb)
RETURNING id, at, actor, action, target, detail

-- name: audit
-- Newest first along corral_audit_at_idx; a filter keeps reading it until
-- the limit is met.
SELECT id, at, actor, action, target, detail
  FROM corral_audit
 WHERE (%(actor)s::text IS NULL OR actor = %(actor)s::text)
   AND (%(action)s::text IS NULL OR action = %(action)s::text)
 ORDER BY at DESC, id DESC
 LIMIT %(limit)s::int8

-- name: role_rights
-- What a login role holds beyond a worker's (corral.queue.roles): attributes,
-- groups, being the role this connection logs in as, objects it owns in this
-- database, privileges granted to it directly on corral's tables.
SELECT r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolbypassrls, r.rolreplication,
       ARRAY(SELECT g.rolname::text FROM pg_auth_members m
              JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid),
       r.rolname IN (current_user, session_user),
       EXISTS (SELECT FROM pg_database d
                WHERE d.datname = current_database() AND d.datdba = r.oid),
       (SELECT count(*) FROM pg_namespace n WHERE n.nspowner = r.oid),
       (SELECT count(*) FROM pg_class c WHERE c.relowner = r.oid),
       (SELECT count(*) FROM pg_proc p WHERE p.proowner = r.oid),
       (SELECT count(*) FROM pg_class c, aclexplode(c.relacl) a
         WHERE c.relname LIKE 'corral\_%%' AND a.grantee = r.oid)
  FROM pg_roles r WHERE r.rolname = %s
