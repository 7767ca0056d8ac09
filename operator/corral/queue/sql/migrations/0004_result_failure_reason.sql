-- 0004: a failure reason for results the database refuses.
--
-- * last_error_reason may be 'result': the handler returned, but the
--   database refused to store what it returned (a value jsonb cannot hold
--   even after the worker cleaned it). The worker fails that one job, not
--   retried (the same result would be refused again), and writes the rest of
--   its batch; the error says what was refused.

ALTER TABLE corral_jobs DROP CONSTRAINT last_error_reason_known;
ALTER TABLE corral_jobs ADD CONSTRAINT last_error_reason_known CHECK (
    last_error_reason IS NULL
    OR last_error_reason IN ('exception', 'timeout', 'payload', 'unknown_kind', 'lease_expired',
                             'result')
);
