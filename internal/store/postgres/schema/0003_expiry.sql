-- Expiry (issue 3): the one way a recording leaves the store. The gateway role gets EXECUTE on
-- expire_sessions and still no DELETE anywhere; the function runs as the schema owner
-- (SECURITY DEFINER) and opens a gate that the triggers check, so that even the owner's
-- DELETE is refused outside it. The gate row exists only inside the function's transaction.
CREATE TABLE expiry_gate (
	id     integer PRIMARY KEY CHECK (id = 1), -- one expiry at a time
	target text NOT NULL,
	cutoff timestamptz NOT NULL
);

-- Statement-level refusal, as in schema 1, but a DELETE passes while the gate is open. The
-- gate is read through TG_TABLE_SCHEMA: a trigger runs with its caller's search_path.
CREATE OR REPLACE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	open boolean;
BEGIN
	IF TG_OP = 'DELETE' THEN
		EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.expiry_gate)', TG_TABLE_SCHEMA) INTO open;
		IF open THEN
			RETURN NULL; -- ignored for a statement-level BEFORE trigger: the statement proceeds
		END IF;
	END IF;
	RAISE EXCEPTION 'airlock: % on %.% refused: recordings are append-only', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
		USING HINT = 'Recordings are removed only by retention.';
END
$$;

-- Row by row, a session leaves only if the open gate covers it: its target, ended before the
-- cutoff, not on hold.
CREATE FUNCTION session_expiry_check() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	g_target text;
	g_cutoff timestamptz;
	held     boolean;
BEGIN
	EXECUTE format('SELECT target, cutoff FROM %I.expiry_gate', TG_TABLE_SCHEMA) INTO g_target, g_cutoff;
	EXECUTE format('SELECT coalesce((SELECT held FROM %I.holds WHERE session_id = $1), false)', TG_TABLE_SCHEMA)
		INTO held USING OLD.id;
	IF g_target IS NULL OR OLD.target IS DISTINCT FROM g_target OR OLD.ended_at IS NULL
		OR OLD.ended_at >= g_cutoff OR held THEN
		RAISE EXCEPTION 'airlock: session % may not be removed: only expiry removes ended, unheld sessions past their retention', OLD.id;
	END IF;
	RETURN OLD;
END
$$;
CREATE TRIGGER sessions_expiry_only BEFORE DELETE ON sessions
	FOR EACH ROW EXECUTE FUNCTION session_expiry_check();

-- expire_sessions removes the sessions of p_target that ended before p_cutoff and are not on
-- hold, with their events, and returns their ids (oldest first). Locks first, then reads: the
-- candidate sessions FOR UPDATE (a new hold's foreign-key check needs a KEY SHARE lock on its
-- session, so it waits) and their hold rows FOR UPDATE (a changed hold waits); the next
-- statement's snapshot then sees every hold committed before the locks.
CREATE FUNCTION expire_sessions(p_target text, p_cutoff timestamptz) RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
	ids text[];
BEGIN
	INSERT INTO expiry_gate (id, target, cutoff) VALUES (1, p_target, p_cutoff);
	PERFORM 1 FROM sessions WHERE target = p_target AND ended_at IS NOT NULL AND ended_at < p_cutoff FOR UPDATE;
	PERFORM 1 FROM holds h JOIN sessions s ON s.id = h.session_id
		WHERE s.target = p_target AND s.ended_at IS NOT NULL AND s.ended_at < p_cutoff FOR UPDATE OF h;
	SELECT coalesce(array_agg(id ORDER BY started_at, id), '{}') INTO ids FROM sessions s
		WHERE target = p_target AND ended_at IS NOT NULL AND ended_at < p_cutoff
		AND NOT EXISTS (SELECT 1 FROM holds h WHERE h.session_id = s.id AND h.held);
	DELETE FROM events WHERE session_id = ANY (ids);
	DELETE FROM holds WHERE session_id = ANY (ids);
	DELETE FROM sessions WHERE id = ANY (ids);
	DELETE FROM expiry_gate;
	RETURN QUERY SELECT unnest(ids);
END
$$;
-- Functions are executable by PUBLIC by default; this one only by whom the operator grants.
REVOKE EXECUTE ON FUNCTION expire_sessions(text, timestamptz) FROM PUBLIC;
