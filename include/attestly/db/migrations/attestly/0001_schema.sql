-- Attestly's own state: owned by a NOLOGIN role; the application role gets only what it needs.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'attestly_owner') THEN
    CREATE ROLE attestly_owner NOLOGIN;
  END IF;
END $$;

DO $$
BEGIN
  EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO attestly_app', current_database());
END $$;
REVOKE ALL ON SCHEMA public FROM PUBLIC;

CREATE SCHEMA attestly AUTHORIZATION attestly_owner;
REVOKE ALL ON SCHEMA attestly FROM PUBLIC;
GRANT USAGE ON SCHEMA attestly TO attestly_app;

SET ROLE attestly_owner;

CREATE FUNCTION attestly.refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '%.% is append-only: % refused for role %', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP, session_user
    USING ERRCODE = 'insufficient_privilege';
END $$;
