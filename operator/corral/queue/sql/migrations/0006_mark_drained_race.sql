-- 0006: a worker's `drained` report no longer undoes the scaler's undrain.
--
-- * corral_mark_drained_v1 read the row's state, then updated the row by id
--   alone. When the operator cancelled the drain between the two (the
--   update waits for the cancellation's row lock, then takes the row as it
--   now is), the active row became drained again, with no drain requested
--   by anyone: the worker stayed drained and the scaler could not undo it.
--   The update now also asks that the row still be draining or drained, a
--   condition PostgreSQL checks again on the row it waited for.

CREATE OR REPLACE FUNCTION corral_mark_drained_v1(p_worker_id bigint, p_credential text)
RETURNS text
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, public, pg_temp
AS $$
DECLARE
    v_state text;
BEGIN
    v_state := corral_caller_state_v1(p_worker_id, p_credential);
    IF v_state IN ('draining', 'drained') THEN
        UPDATE corral_workers w
           SET state = 'drained', drained_at = now(), in_flight = 0
         WHERE w.id = p_worker_id AND w.state IN ('draining', 'drained')
        RETURNING w.state INTO v_state;
        IF NOT FOUND THEN
            SELECT w.state INTO v_state FROM corral_workers w WHERE w.id = p_worker_id;
        END IF;
    END IF;
    RETURN v_state;
END
$$;
