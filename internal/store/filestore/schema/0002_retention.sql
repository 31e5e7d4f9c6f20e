-- Retention (issue 3): legal holds, and the one narrow path by which a session row may be deleted.

-- A session's legal hold. Kept beside sessions, whose rows take no change but their end.
CREATE TABLE holds (
	session_id TEXT PRIMARY KEY REFERENCES sessions (id),
	held       INTEGER NOT NULL CHECK (held IN (0, 1))
) STRICT;

-- The expiry gate: at most one row, which Store.Expire inserts and deletes inside the one
-- transaction that deletes expired sessions; it is never committed. A session row may be deleted
-- only while the gate names its target and a cutoff it ended before, and only if it is not held.
-- Any other DELETE (no gate row, a running session, a held one, a newer one) is refused.
CREATE TABLE expiry_gate (
	id     INTEGER PRIMARY KEY CHECK (id = 1),
	target TEXT NOT NULL,
	cutoff INTEGER NOT NULL -- unix ns
) STRICT;

DROP TRIGGER sessions_no_delete;
CREATE TRIGGER sessions_no_delete BEFORE DELETE ON sessions
WHEN OLD.ended_at IS NULL
	OR NOT EXISTS (SELECT 1 FROM expiry_gate g WHERE g.target = OLD.target AND OLD.ended_at < g.cutoff)
	OR EXISTS (SELECT 1 FROM holds h WHERE h.session_id = OLD.id AND h.held = 1)
BEGIN
	SELECT RAISE(ABORT, 'sessions are append-only: only retention expires an ended, unheld session');
END;

-- A hold row goes only with its session, through the same gate.
CREATE TRIGGER holds_no_delete BEFORE DELETE ON holds
WHEN OLD.held = 1 OR NOT EXISTS (SELECT 1 FROM expiry_gate)
BEGIN
	SELECT RAISE(ABORT, 'holds are released with SetHold, not deleted');
END;
