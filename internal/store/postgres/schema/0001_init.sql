-- Applied inside one transaction with search_path set to the store's schema: names are
-- unqualified on purpose. Never edit a released migration: add the next file.

-- One row per recording; the recording itself is the session's rows in events. ended_at,
-- end_reason, events and head are set once, when the session ends.
CREATE TABLE sessions (
	id          text PRIMARY KEY,
	"user"      text NOT NULL,
	target      text NOT NULL,
	type        text NOT NULL,
	client_addr text NOT NULL,
	started_at  timestamptz NOT NULL,
	ended_at    timestamptz,
	end_reason  text NOT NULL DEFAULT '',
	events      bigint NOT NULL DEFAULT 0,
	head        bytea -- SHA-256 of the last event, NULL while running
);
CREATE INDEX sessions_started_at ON sessions (started_at DESC, id DESC);
CREATE INDEX sessions_user ON sessions ("user", started_at DESC);
CREATE INDEX sessions_target ON sessions (target, started_at DESC);

-- Events keep exactly what event.Canonical covers, so that the hash recomputes byte for byte:
-- times as integer nanoseconds (timestamptz has microseconds), data as the exact JSON bytes
-- (jsonb would normalize them). prev is not stored: it is the hash of the row before.
CREATE TABLE events (
	session_id text   NOT NULL REFERENCES sessions (id),
	seq        bigint NOT NULL CHECK (seq > 0),
	type       text   NOT NULL,
	offset_ns  bigint NOT NULL, -- monotonic time since the session started
	time_ns    bigint NOT NULL, -- wall clock, Unix nanoseconds
	data       bytea  NOT NULL,
	raw        bytea,           -- NULL when the event has no attachment
	hash       bytea  NOT NULL CHECK (length(hash) = 32),
	PRIMARY KEY (session_id, seq)
);

-- Insert-only. A statement-level trigger fires even when no row matches, and is the only kind
-- TRUNCATE fires. These hold against every role that cannot drop or disable them, that is
-- every role but the owner and superusers; see docs/storage-postgres.md.
CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	RAISE EXCEPTION 'airlock: % on %.% refused: recordings are append-only', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
		USING HINT = 'Recordings are removed only by retention.';
END
$$;

CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON events
	FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER sessions_no_delete BEFORE DELETE OR TRUNCATE ON sessions
	FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- The only change a session takes is its end, once.
CREATE FUNCTION session_end_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF OLD.ended_at IS NOT NULL OR NEW.ended_at IS NULL
		OR NEW.id IS DISTINCT FROM OLD.id OR NEW."user" IS DISTINCT FROM OLD."user"
		OR NEW.target IS DISTINCT FROM OLD.target OR NEW.type IS DISTINCT FROM OLD.type
		OR NEW.client_addr IS DISTINCT FROM OLD.client_addr OR NEW.started_at IS DISTINCT FROM OLD.started_at
	THEN
		RAISE EXCEPTION 'airlock: session % can only be ended, once', OLD.id;
	END IF;
	RETURN NEW;
END
$$;
CREATE TRIGGER sessions_end_once BEFORE UPDATE ON sessions
	FOR EACH ROW EXECUTE FUNCTION session_end_once();

CREATE TABLE targets (
	name text PRIMARY KEY,
	spec jsonb NOT NULL -- target.Target as JSON
);

CREATE TABLE kv (
	key   text PRIMARY KEY,
	value bytea NOT NULL
);
