-- Sessions index: one row per recording. The recording's events live in the file at path
-- (relative to the data directory); events and head are known once the session ended.
CREATE TABLE sessions (
	id          TEXT PRIMARY KEY,
	user        TEXT NOT NULL,
	target      TEXT NOT NULL,
	type        TEXT NOT NULL,
	client_addr TEXT NOT NULL,
	started_at  INTEGER NOT NULL, -- unix ns
	ended_at    INTEGER,          -- unix ns, NULL while running
	end_reason  TEXT NOT NULL DEFAULT '',
	events      INTEGER NOT NULL DEFAULT 0,
	head        TEXT NOT NULL DEFAULT '', -- hex SHA-256 of the last event
	path        TEXT NOT NULL
) STRICT;
CREATE INDEX sessions_started_at ON sessions (started_at);
CREATE INDEX sessions_user ON sessions (user, started_at);
CREATE INDEX sessions_target ON sessions (target, started_at);

-- The index is append-only like the recordings: a session is never deleted, and the only
-- change it ever takes is its end, once.
CREATE TRIGGER sessions_no_delete BEFORE DELETE ON sessions
BEGIN
	SELECT RAISE(ABORT, 'sessions are append-only');
END;
CREATE TRIGGER sessions_end_once BEFORE UPDATE ON sessions
WHEN OLD.ended_at IS NOT NULL
	OR NEW.id IS NOT OLD.id OR NEW.user IS NOT OLD.user OR NEW.target IS NOT OLD.target
	OR NEW.type IS NOT OLD.type OR NEW.client_addr IS NOT OLD.client_addr
	OR NEW.started_at IS NOT OLD.started_at OR NEW.path IS NOT OLD.path
BEGIN
	SELECT RAISE(ABORT, 'a session can only be ended, once');
END;

CREATE TABLE targets (
	name TEXT PRIMARY KEY,
	json TEXT NOT NULL -- target.Target as JSON
) STRICT;

CREATE TABLE kv (
	key   TEXT PRIMARY KEY,
	value BLOB NOT NULL
) STRICT;
