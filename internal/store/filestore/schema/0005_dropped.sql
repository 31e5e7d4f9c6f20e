-- Best-effort recording (issue 3): how many events a session could not keep. The recorder raises
-- it while the session runs and sets it once more at the end; it never goes down, and like every
-- other column it no longer changes once the session ended.
ALTER TABLE sessions ADD COLUMN dropped_events INTEGER NOT NULL DEFAULT 0;

DROP TRIGGER sessions_end_once;
CREATE TRIGGER sessions_end_once BEFORE UPDATE ON sessions
WHEN OLD.ended_at IS NOT NULL
	OR NEW.id IS NOT OLD.id OR NEW.user IS NOT OLD.user OR NEW.target IS NOT OLD.target
	OR NEW.type IS NOT OLD.type OR NEW.client_addr IS NOT OLD.client_addr
	OR NEW.started_at IS NOT OLD.started_at OR NEW.path IS NOT OLD.path
	OR NEW.dropped_events < OLD.dropped_events
BEGIN
	SELECT RAISE(ABORT, 'a session can only be ended, once, and its count of dropped events only raised while it runs');
END;
