-- The sessions list at scale (issue 7): pages continue from a (started_at, id) cursor, and the
-- running sessions are listed without reading the ended ones.
CREATE INDEX sessions_started_id ON sessions (started_at, id);
CREATE INDEX sessions_active ON sessions (started_at, id) WHERE ended_at IS NULL;
