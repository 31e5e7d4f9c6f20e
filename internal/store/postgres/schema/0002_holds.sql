-- Legal holds (issue 3), beside sessions, whose rows take no change but their end. Expiry on
-- PostgreSQL is not implemented yet: nothing here deletes anything.
CREATE TABLE holds (
	session_id text PRIMARY KEY REFERENCES sessions (id),
	held       boolean NOT NULL
);
