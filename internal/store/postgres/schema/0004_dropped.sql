-- Best-effort recording (issue 3): how many events a session could not keep. The recorder raises
-- it while the session runs and sets it once more at the end; it never goes down, and like every
-- other column it no longer changes once the session ended. The gateway role needs
-- UPDATE (dropped_events) on sessions (docs/storage-postgres.md).
ALTER TABLE sessions ADD COLUMN dropped_events bigint NOT NULL DEFAULT 0;

-- A running session's row takes two changes: its count of dropped events, raised, and its end,
-- once. An ended one takes none.
CREATE OR REPLACE FUNCTION session_end_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF OLD.ended_at IS NOT NULL
		OR NEW.id IS DISTINCT FROM OLD.id OR NEW."user" IS DISTINCT FROM OLD."user"
		OR NEW.target IS DISTINCT FROM OLD.target OR NEW.type IS DISTINCT FROM OLD.type
		OR NEW.client_addr IS DISTINCT FROM OLD.client_addr OR NEW.started_at IS DISTINCT FROM OLD.started_at
		OR NEW.dropped_events < OLD.dropped_events
		OR (NEW.ended_at IS NULL AND (NEW.end_reason, NEW.events, NEW.head) IS DISTINCT FROM (OLD.end_reason, OLD.events, OLD.head))
	THEN
		RAISE EXCEPTION 'airlock: session % can only be ended, once, and its count of dropped events only raised while it runs', OLD.id;
	END IF;
	RETURN NEW;
END
$$;
