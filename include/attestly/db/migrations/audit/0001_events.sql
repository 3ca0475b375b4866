-- Reference schema of the application's audit log (what Attestly reads). Users map their own table in
-- include/policy/sources.yaml. Structural columns are NOT NULL; content rules (required fields, enums,
-- no PHI in clear) are deliberately left to the audit_log_quality suite, as in most real applications,
-- so that the suite is what catches a bad row.

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'audit_owner') THEN
    CREATE ROLE audit_owner NOLOGIN;
  END IF;
END $$;

DO $$
BEGIN
  EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO audit_writer, attestly_reader, attestly_archiver',
                 current_database());
END $$;
REVOKE ALL ON SCHEMA public FROM PUBLIC;

CREATE SCHEMA audit AUTHORIZATION audit_owner;
REVOKE ALL ON SCHEMA audit FROM PUBLIC;
GRANT USAGE ON SCHEMA audit TO audit_writer, attestly_reader, attestly_archiver;

SET ROLE audit_owner;

CREATE TABLE audit.events (
  id              uuid        NOT NULL,
  occurred_at     timestamptz NOT NULL,
  recorded_at     timestamptz NOT NULL DEFAULT now(),
  source          text        NOT NULL,
  seq             bigint      NOT NULL,
  event_type      text,
  actor_id        text,
  resource_id     text,
  action          text,
  result          text,
  ip              inet,
  user_agent      text,
  metadata        jsonb,
  severity        text,
  standard        text,
  subject_id      text,
  phi_ciphertext  bytea,
  subject_key_id  text,
  prev_hash       bytea,
  row_hash        bytea       NOT NULL,
  PRIMARY KEY (id, occurred_at)
) PARTITION BY RANGE (occurred_at);

CREATE INDEX events_source_seq ON audit.events (source, seq);
CREATE INDEX events_subject ON audit.events (subject_id) WHERE subject_id IS NOT NULL;

COMMENT ON TABLE audit.events IS
  'Append-only audit log, monthly partitions. UPDATE, DELETE and TRUNCATE are refused except through audit.purge_events().';
COMMENT ON COLUMN audit.events.row_hash IS
  'sha256 over the canonical row and prev_hash (see attestly.audit.chain); per-source hash chain';

-- Refuse every change. The one exception: a DELETE issued by audit.purge_events(), which runs as
-- audit_owner (SECURITY DEFINER) and marks its own transaction. Nobody but audit_owner (NOLOGIN) has
-- the DELETE privilege, so the marker cannot be forged by a login role.
CREATE FUNCTION audit.refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE'
     AND current_user = 'audit_owner'
     AND current_setting('audit.purge_in_progress', true) = 'on' THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'audit.events is append-only: % refused for role %', TG_OP, session_user
    USING ERRCODE = 'insufficient_privilege',
          HINT = 'archived rows are removed only by the retention_archive purge path';
END $$;

CREATE TRIGGER events_append_only
  BEFORE UPDATE OR DELETE ON audit.events
  FOR EACH ROW EXECUTE FUNCTION audit.refuse_change();

CREATE TRIGGER events_no_truncate
  BEFORE TRUNCATE ON audit.events
  FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change();

-- Monthly partitions, created by the writer ahead of use. Each gets its own TRUNCATE guard
-- (statement triggers are not inherited by partitions).
CREATE FUNCTION audit.ensure_month_partition(p_month date) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, audit AS $$
DECLARE
  m      date := date_trunc('month', p_month)::date;
  pname  text := format('events_y%sm%s', to_char(m, 'YYYY'), to_char(m, 'MM'));
BEGIN
  IF to_regclass(format('audit.%I', pname)) IS NULL THEN
    EXECUTE format(
      'CREATE TABLE audit.%I PARTITION OF audit.events FOR VALUES FROM (%L) TO (%L)',
      pname, (m::timestamp AT TIME ZONE 'UTC'), ((m + interval '1 month')::timestamp AT TIME ZONE 'UTC'));
    EXECUTE format(
      'CREATE TRIGGER %I BEFORE TRUNCATE ON audit.%I FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_change()',
      pname || '_no_truncate', pname);
  END IF;
  RETURN pname;
END $$;

-- The purge path: deletes exactly the given rows of one month, all or nothing, and says how many.
CREATE FUNCTION audit.purge_events(p_ids uuid[], p_from timestamptz, p_to timestamptz, p_expected bigint)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, audit AS $$
DECLARE
  n bigint;
BEGIN
  PERFORM set_config('audit.purge_in_progress', 'on', true);
  DELETE FROM audit.events WHERE id = ANY(p_ids) AND occurred_at >= p_from AND occurred_at < p_to;
  GET DIAGNOSTICS n = ROW_COUNT;
  PERFORM set_config('audit.purge_in_progress', 'off', true);
  IF n <> p_expected THEN
    RAISE EXCEPTION 'purge refused: % rows matched, % were verified', n, p_expected
      USING ERRCODE = 'data_exception';
  END IF;
  RETURN n;
END $$;

-- Whole months: detach and drop a partition, only if it holds exactly the verified number of rows.
CREATE FUNCTION audit.drop_month_partition(p_month date, p_expected bigint) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, audit AS $$
DECLARE
  m      date := date_trunc('month', p_month)::date;
  pname  text := format('events_y%sm%s', to_char(m, 'YYYY'), to_char(m, 'MM'));
  n      bigint;
BEGIN
  IF to_regclass(format('audit.%I', pname)) IS NULL THEN
    RETURN 0;
  END IF;
  EXECUTE format('LOCK TABLE audit.%I IN ACCESS EXCLUSIVE MODE', pname);
  EXECUTE format('SELECT count(*) FROM audit.%I', pname) INTO n;
  IF n <> p_expected THEN
    RAISE EXCEPTION 'drop refused: partition % holds % rows, % were verified', pname, n, p_expected
      USING ERRCODE = 'data_exception';
  END IF;
  EXECUTE format('ALTER TABLE audit.events DETACH PARTITION audit.%I', pname);
  EXECUTE format('DROP TABLE audit.%I', pname);
  RETURN n;
END $$;

REVOKE ALL ON ALL TABLES IN SCHEMA audit FROM PUBLIC;
REVOKE ALL ON FUNCTION audit.ensure_month_partition(date) FROM PUBLIC;
REVOKE ALL ON FUNCTION audit.purge_events(uuid[], timestamptz, timestamptz, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION audit.drop_month_partition(date, bigint) FROM PUBLIC;

GRANT INSERT ON audit.events TO audit_writer;
GRANT SELECT ON audit.events TO attestly_reader, attestly_archiver;
GRANT EXECUTE ON FUNCTION audit.ensure_month_partition(date) TO audit_writer;
GRANT EXECUTE ON FUNCTION audit.purge_events(uuid[], timestamptz, timestamptz, bigint) TO attestly_archiver;
GRANT EXECUTE ON FUNCTION audit.drop_month_partition(date, bigint) TO attestly_archiver;

-- The writer appends to per-source hash chains, so it must know each chain's head; it gets that and
-- nothing else (it cannot SELECT the table).
CREATE FUNCTION audit.chain_heads()
RETURNS TABLE (source text, seq bigint, row_hash bytea, occurred_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, audit AS $$
  SELECT DISTINCT ON (e.source) e.source, e.seq, e.row_hash,
         (SELECT max(x.occurred_at) FROM audit.events x WHERE x.source = e.source)
  FROM audit.events e
  ORDER BY e.source, e.seq DESC, e.recorded_at ASC, e.id
$$;
REVOKE ALL ON FUNCTION audit.chain_heads() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.chain_heads() TO audit_writer;
