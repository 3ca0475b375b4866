-- The audit database refuses, on its own, what the purge path must never do — whoever calls it, the
-- archiver role included:
--   * no row younger than the online floor (audit.retention_floor, set by the schema owner, measured by
--     this server's clock) is ever deleted;
--   * rows leave only as whole, recorded, verified batches: the archiver first records what it is
--     authorised to delete (audit.purge_authorizations: batch id, scope, row count, content digest, and the
--     archive object's key, version and SHA-256), and audit.purge_batch() / audit.drop_partition_authorized()
--     recompute the digest of the rows in the database and refuse unless it is exactly the verified one;
--   * rows under a legal hold (audit.legal_holds, mirrored here by the hold commands) stay; they are
--     remembered (audit.purge_residual) and a later round may delete only them, once released;
--   * every purge and partition drop is logged in audit.purge_log, append-only.
-- The unchecked 0001/0002 purge functions are removed.
DO $$
BEGIN
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO attestly_custodian', current_database());
END $$;
GRANT USAGE ON SCHEMA audit TO attestly_custodian;

SET ROLE audit_owner;

DROP FUNCTION audit.purge_events(uuid[], timestamptz, timestamptz, bigint);
DROP FUNCTION audit.purge_staged(text, timestamptz, timestamptz, bigint, jsonb);
DROP FUNCTION audit.drop_partition_logged(date, text[], bigint[], jsonb);
DROP TABLE audit.purge_queue;
-- Kept as an internal step of drop_partition_authorized(); nobody else may call it.
REVOKE ALL ON FUNCTION audit.drop_month_partition(date, bigint) FROM attestly_archiver;

ALTER TABLE audit.purge_log ADD COLUMN batch_id text;
CREATE INDEX purge_log_batch ON audit.purge_log (batch_id);

-- ------------------------------------------------------------------------------------------ the floor

CREATE TABLE audit.retention_floor (
  only_row       boolean     PRIMARY KEY DEFAULT true CHECK (only_row),
  online_months  integer     NOT NULL CHECK (online_months BETWEEN 1 AND 120),
  set_at         timestamptz NOT NULL DEFAULT now(),
  set_by         text        NOT NULL DEFAULT session_user
);
COMMENT ON TABLE audit.retention_floor IS
  'Shortest time a row stays online, whatever any caller says: rows of a month are purged at the earliest on the first day of the month online_months after its end (by this server''s clock). Only the schema owner changes it.';
INSERT INTO audit.retention_floor (online_months) VALUES (3);

-- The first instant that is still online: rows at or after it are never purged.
CREATE FUNCTION audit.purge_cutoff() RETURNS timestamptz
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, audit AS $$
  SELECT (date_trunc('month', now() AT TIME ZONE 'UTC') - make_interval(months => f.online_months))
         AT TIME ZONE 'UTC'
  FROM audit.retention_floor f
$$;

-- --------------------------------------------------------------------------------------- legal holds

-- A mirror of Attestly's legal holds (attestly hold add | release write both databases), so that this
-- database knows which rows it must keep. Same selection rule: every given criterion must match.
CREATE TABLE audit.legal_holds (
  hold_id     text        PRIMARY KEY CHECK (hold_id ~ '^hold-[0-9a-f]{12}$'),
  source      text,
  subject_id  text,
  from_ts     timestamptz,
  to_ts       timestamptz,
  placed_at   timestamptz NOT NULL DEFAULT now(),
  placed_by   text        NOT NULL DEFAULT session_user,
  CHECK (source IS NOT NULL OR subject_id IS NOT NULL OR from_ts IS NOT NULL OR to_ts IS NOT NULL),
  CHECK (from_ts IS NULL OR to_ts IS NULL OR from_ts < to_ts)
);
CREATE TABLE audit.legal_hold_releases (
  hold_id      text        PRIMARY KEY REFERENCES audit.legal_holds (hold_id),
  released_at  timestamptz NOT NULL DEFAULT now(),
  released_by  text        NOT NULL DEFAULT session_user
);

CREATE FUNCTION audit.place_hold(p_hold_id text, p_source text, p_subject_id text,
                                 p_from timestamptz, p_to timestamptz) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, audit AS $$
DECLARE
  h audit.legal_holds%ROWTYPE;
BEGIN
  SELECT * INTO h FROM audit.legal_holds WHERE hold_id = p_hold_id;
  IF FOUND THEN
    IF h.source IS DISTINCT FROM p_source OR h.subject_id IS DISTINCT FROM p_subject_id
       OR h.from_ts IS DISTINCT FROM p_from OR h.to_ts IS DISTINCT FROM p_to THEN
      RAISE EXCEPTION 'legal hold % is already placed with other criteria', p_hold_id
        USING ERRCODE = 'unique_violation';
    END IF;
    RETURN;
  END IF;
  INSERT INTO audit.legal_holds (hold_id, source, subject_id, from_ts, to_ts)
  VALUES (p_hold_id, p_source, p_subject_id, p_from, p_to);
END $$;

CREATE FUNCTION audit.release_hold(p_hold_id text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, audit AS $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM audit.legal_holds WHERE hold_id = p_hold_id) THEN
    RAISE EXCEPTION 'no legal hold % in the audit database', p_hold_id USING ERRCODE = 'no_data_found';
  END IF;
  INSERT INTO audit.legal_hold_releases (hold_id) VALUES (p_hold_id) ON CONFLICT (hold_id) DO NOTHING;
END $$;

CREATE VIEW audit.active_legal_holds AS
  SELECT h.* FROM audit.legal_holds h
  WHERE NOT EXISTS (SELECT 1 FROM audit.legal_hold_releases r WHERE r.hold_id = h.hold_id);

-- Whether an active hold selects a row (source, subject, time).
CREATE FUNCTION audit.held(p_source text, p_subject_id text, p_at timestamptz) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, audit AS $$
  SELECT EXISTS (
    SELECT 1 FROM audit.active_legal_holds h
    WHERE (h.source IS NULL OR h.source = p_source)
      AND (h.subject_id IS NULL OR h.subject_id = p_subject_id)
      AND (h.from_ts IS NULL OR p_at >= h.from_ts)
      AND (h.to_ts IS NULL OR p_at < h.to_ts))
$$;

-- ----------------------------------------------------------------------------- authorisations, digest

CREATE TABLE audit.purge_authorizations (
  batch_id         text        PRIMARY KEY CHECK (length(batch_id) BETWEEN 1 AND 300),
  period_from      timestamptz NOT NULL,
  period_to        timestamptz NOT NULL,
  selector_values  text[]      NOT NULL CHECK (cardinality(selector_values) > 0),
  rows             bigint      NOT NULL CHECK (rows >= 0),
  content_digest   text        NOT NULL CHECK (content_digest ~ '^[0-9a-f]{64}$'),
  bucket           text        NOT NULL CHECK (length(bucket) BETWEEN 3 AND 63),
  object_key       text        NOT NULL CHECK (length(object_key) BETWEEN 1 AND 1024),
  version_id       text        NOT NULL CHECK (length(version_id) BETWEEN 1 AND 1024),
  object_sha256    text        NOT NULL CHECK (object_sha256 ~ '^[0-9a-f]{64}$'),
  authorized_at    timestamptz NOT NULL DEFAULT now(),
  authorized_by    text        NOT NULL DEFAULT session_user,
  CHECK (period_from < period_to)
);
COMMENT ON TABLE audit.purge_authorizations IS
  'What the archive verified and may therefore be deleted: one row per archive batch, written once';

-- Rows of a batch left online at its first purge because a hold selected them.
CREATE TABLE audit.purge_residual (
  batch_id     text        NOT NULL REFERENCES audit.purge_authorizations (batch_id),
  id           uuid        NOT NULL,
  occurred_at  timestamptz NOT NULL,
  PRIMARY KEY (batch_id, id, occurred_at)
);

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['legal_holds', 'legal_hold_releases', 'purge_authorizations', 'purge_residual']
  LOOP
    EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON audit.%I
                    FOR EACH ROW EXECUTE FUNCTION audit.refuse_log_change()', t || '_append_only', t);
    EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON audit.%I
                    FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_log_change()', t || '_no_truncate', t);
  END LOOP;
END $$;

-- The block digest of the rows of a scope (time range and `standard` values): the lines of the archive
-- content hash ('<id>:<row_hash hex>\n', ORDER BY id) in blocks of 16384, and SHA-256 over the
-- concatenated SHA-256 of each block (attestly.archive.schema.BLOCK_DIGEST_DEFINITION). Computed the same
-- way from the decrypted archive, so equal digests mean the database holds exactly the archived rows.
CREATE FUNCTION audit.scope_figures(p_from timestamptz, p_to timestamptz, p_values text[],
                                    OUT rows bigint, OUT digest text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, audit AS $$
  WITH lines AS (
    SELECT e.id::text || ':' || coalesce(encode(e.row_hash, 'hex'), '') || E'\n' AS line,
           row_number() OVER (ORDER BY e.id) AS rn
    FROM audit.events e
    WHERE e.occurred_at >= p_from AND e.occurred_at < p_to AND e.standard = ANY(p_values)
  ), blocks AS (
    SELECT (rn - 1) / 16384 AS b, count(*) AS n,
           sha256(convert_to(string_agg(line, '' ORDER BY rn), 'UTF8')) AS h
    FROM lines GROUP BY 1
  )
  SELECT coalesce(sum(n), 0)::bigint,
         encode(sha256(coalesce(string_agg(h, ''::bytea ORDER BY b), ''::bytea)), 'hex')
  FROM blocks
$$;

CREATE FUNCTION audit.authorize_purge(p_batch_id text, p_from timestamptz, p_to timestamptz,
                                      p_values text[], p_rows bigint, p_digest text, p_bucket text,
                                      p_object_key text, p_version_id text, p_object_sha256 text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, audit AS $$
DECLARE
  a      audit.purge_authorizations%ROWTYPE;
  cutoff timestamptz := audit.purge_cutoff();
  other  text;
BEGIN
  SELECT * INTO a FROM audit.purge_authorizations WHERE batch_id = p_batch_id;
  IF FOUND THEN
    IF (a.period_from, a.period_to, a.selector_values, a.rows, a.content_digest, a.bucket, a.object_key,
        a.version_id, a.object_sha256)
       IS DISTINCT FROM (p_from, p_to, p_values, p_rows, p_digest, p_bucket, p_object_key, p_version_id,
                         p_object_sha256) THEN
      RAISE EXCEPTION 'purge authorisation of % refused: it was recorded at % with other figures',
        p_batch_id, a.authorized_at USING ERRCODE = 'unique_violation';
    END IF;
    RETURN;
  END IF;
  IF p_to > cutoff THEN
    RAISE EXCEPTION 'purge authorisation of % refused: its rows (% .. %) are still inside the online floor (rows before % only, by this server''s clock)',
      p_batch_id, p_from, p_to, cutoff USING ERRCODE = 'insufficient_privilege';
  END IF;
  SELECT x.batch_id INTO other FROM audit.purge_authorizations x
   WHERE x.period_from < p_to AND p_from < x.period_to AND x.selector_values && p_values LIMIT 1;
  IF other IS NOT NULL THEN
    RAISE EXCEPTION 'purge authorisation of % refused: its scope overlaps batch %', p_batch_id, other
      USING ERRCODE = 'exclusion_violation';
  END IF;
  INSERT INTO audit.purge_authorizations (batch_id, period_from, period_to, selector_values, rows,
    content_digest, bucket, object_key, version_id, object_sha256)
  VALUES (p_batch_id, p_from, p_to, p_values, p_rows, p_digest, p_bucket, p_object_key, p_version_id,
    p_object_sha256);
END $$;

-- Delete an authorised batch's rows. First round: the rows in the batch's scope must be exactly the
-- verified ones (row count and block digest); rows an active hold selects stay and are remembered. Later
-- rounds delete only remembered rows no hold selects any more. Returns the rows deleted; a later round
-- with nothing to delete returns 0 and logs nothing. Runs once per purge id.
CREATE FUNCTION audit.purge_batch(p_batch_id text, p_purge_id text, p_detail jsonb) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, audit AS $$
DECLARE
  a         audit.purge_authorizations%ROWTYPE;
  cutoff    timestamptz := audit.purge_cutoff();
  f         record;
  first     boolean;
  n         bigint;
  residual  bigint;
  held_by   text[];
BEGIN
  SELECT * INTO a FROM audit.purge_authorizations WHERE batch_id = p_batch_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'purge of % refused: no verified archive batch is recorded for it (audit.purge_authorizations)',
      p_batch_id USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF p_purge_id IS NULL OR left(p_purge_id, length(p_batch_id) + 1) <> p_batch_id || '#' THEN
    RAISE EXCEPTION 'purge of % refused: purge id % does not name the batch', p_batch_id, p_purge_id
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF a.period_to > cutoff THEN
    RAISE EXCEPTION 'purge of % refused: its rows (% .. %) are still inside the online floor (rows before % only, by this server''s clock)',
      p_batch_id, a.period_from, a.period_to, cutoff USING ERRCODE = 'insufficient_privilege';
  END IF;
  PERFORM pg_advisory_xact_lock(hashtext('audit.purge_batch'), hashtext(p_batch_id));
  IF EXISTS (SELECT 1 FROM audit.purge_log WHERE purge_id = p_purge_id) THEN
    RAISE EXCEPTION 'purge % was already done', p_purge_id USING ERRCODE = 'unique_violation';
  END IF;
  first := NOT EXISTS (SELECT 1 FROM audit.purge_log WHERE batch_id = p_batch_id);
  PERFORM set_config('audit.purge_in_progress', 'on', true);
  IF first THEN
    SELECT * INTO f FROM audit.scope_figures(a.period_from, a.period_to, a.selector_values);
    IF f.rows <> a.rows OR f.digest <> a.content_digest THEN
      RAISE EXCEPTION 'purge of % refused: the database holds % rows (digest %) in its scope, % rows (digest %) were archived and verified',
        p_batch_id, f.rows, f.digest, a.rows, a.content_digest USING ERRCODE = 'data_exception';
    END IF;
    IF EXISTS (SELECT 1 FROM audit.active_legal_holds) THEN
      INSERT INTO audit.purge_residual (batch_id, id, occurred_at)
        SELECT p_batch_id, e.id, e.occurred_at FROM audit.events e
         WHERE e.occurred_at >= a.period_from AND e.occurred_at < a.period_to
           AND e.standard = ANY(a.selector_values)
           AND EXISTS (SELECT 1 FROM audit.active_legal_holds h
                        WHERE (h.source IS NULL OR h.source = e.source)
                          AND (h.subject_id IS NULL OR h.subject_id = e.subject_id)
                          AND (h.from_ts IS NULL OR e.occurred_at >= h.from_ts)
                          AND (h.to_ts IS NULL OR e.occurred_at < h.to_ts));
    END IF;
    DELETE FROM audit.events e
     WHERE e.occurred_at >= a.period_from AND e.occurred_at < a.period_to
       AND e.standard = ANY(a.selector_values)
       AND NOT EXISTS (SELECT 1 FROM audit.purge_residual r
                        WHERE r.batch_id = p_batch_id AND r.id = e.id AND r.occurred_at = e.occurred_at);
    GET DIAGNOSTICS n = ROW_COUNT;
  ELSE
    DELETE FROM audit.events e USING audit.purge_residual r
     WHERE r.batch_id = p_batch_id AND e.id = r.id AND e.occurred_at = r.occurred_at
       AND e.occurred_at >= a.period_from AND e.occurred_at < a.period_to
       AND NOT audit.held(e.source, e.subject_id, e.occurred_at);
    GET DIAGNOSTICS n = ROW_COUNT;
  END IF;
  PERFORM set_config('audit.purge_in_progress', 'off', true);
  IF NOT first AND n = 0 THEN
    RETURN 0;
  END IF;
  SELECT count(*) INTO residual FROM audit.events e JOIN audit.purge_residual r
    ON r.batch_id = p_batch_id AND r.id = e.id AND r.occurred_at = e.occurred_at;
  SELECT coalesce(array_agg(DISTINCT h.hold_id ORDER BY h.hold_id), '{}') INTO held_by
    FROM audit.events e
    JOIN audit.purge_residual r ON r.batch_id = p_batch_id AND r.id = e.id AND r.occurred_at = e.occurred_at
    JOIN audit.active_legal_holds h
      ON (h.source IS NULL OR h.source = e.source) AND (h.subject_id IS NULL OR h.subject_id = e.subject_id)
     AND (h.from_ts IS NULL OR e.occurred_at >= h.from_ts) AND (h.to_ts IS NULL OR e.occurred_at < h.to_ts);
  INSERT INTO audit.purge_log (purge_id, batch_id, method, rows, period_from, period_to, detail)
  VALUES (p_purge_id, p_batch_id, 'rows', n, a.period_from, a.period_to,
          coalesce(p_detail, '{}'::jsonb) || jsonb_build_object(
            'residual_rows', residual, 'held_by', to_jsonb(held_by), 'content_digest', a.content_digest,
            'object', jsonb_build_object('bucket', a.bucket, 'key', a.object_key, 'version_id', a.version_id,
                                         'sha256', a.object_sha256)));
  RETURN n;
END $$;

-- Drop a whole month partition whose every row belongs to one of the given authorised batches (each
-- verified by count and digest, none purged before) and no hold selects: detach and drop, one log row
-- per batch.
CREATE FUNCTION audit.drop_partition_authorized(p_month date, p_batch_ids text[], p_detail jsonb)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, audit AS $$
DECLARE
  m         date := date_trunc('month', p_month)::date;
  m_from    timestamptz := (m::timestamp AT TIME ZONE 'UTC');
  m_to      timestamptz := ((m + interval '1 month')::timestamp AT TIME ZONE 'UTC');
  pname     text := format('events_y%sm%s', to_char(m, 'YYYY'), to_char(m, 'MM'));
  cutoff    timestamptz := audit.purge_cutoff();
  a         audit.purge_authorizations%ROWTYPE;
  f         record;
  total     bigint;
  expected  bigint := 0;
  covered   text[] := '{}';
  uncovered bigint;
  held      bigint;
  n         bigint;
  bid       text;
BEGIN
  IF coalesce(cardinality(p_batch_ids), 0) = 0 THEN
    RAISE EXCEPTION 'drop of partition % refused: no batches named', m USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF to_regclass(format('audit.%I', pname)) IS NULL THEN
    RAISE EXCEPTION 'drop of partition % refused: there is no such partition', m USING ERRCODE = 'no_data_found';
  END IF;
  IF m_to > cutoff THEN
    RAISE EXCEPTION 'drop of partition % refused: its rows are still inside the online floor (rows before % only, by this server''s clock)',
      m, cutoff USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF EXISTS (SELECT 1 FROM audit.purge_log WHERE batch_id = ANY(p_batch_ids)) THEN
    RAISE EXCEPTION 'drop of partition % refused: a batch among % was already purged', m, p_batch_ids
      USING ERRCODE = 'unique_violation';
  END IF;
  EXECUTE format('LOCK TABLE audit.%I IN ACCESS EXCLUSIVE MODE', pname);
  FOREACH bid IN ARRAY p_batch_ids LOOP
    SELECT * INTO a FROM audit.purge_authorizations WHERE batch_id = bid;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'drop of partition % refused: no verified archive batch % is recorded', m, bid
        USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF a.period_from <> m_from OR a.period_to <> m_to THEN
      RAISE EXCEPTION 'drop of partition % refused: batch % covers % .. %, not the month', m, bid,
        a.period_from, a.period_to USING ERRCODE = 'data_exception';
    END IF;
    expected := expected + a.rows;
    covered := covered || a.selector_values;
  END LOOP;
  EXECUTE format('SELECT count(*), count(*) FILTER (WHERE standard IS NULL OR NOT standard = ANY($1)) '
                 'FROM audit.%I', pname)
    INTO total, uncovered USING covered;
  held := 0;
  IF EXISTS (SELECT 1 FROM audit.active_legal_holds) THEN
    EXECUTE format('SELECT count(*) FROM audit.%I e WHERE EXISTS (SELECT 1 FROM audit.active_legal_holds h '
                   'WHERE (h.source IS NULL OR h.source = e.source) AND (h.subject_id IS NULL OR h.subject_id = e.subject_id) '
                   'AND (h.from_ts IS NULL OR e.occurred_at >= h.from_ts) AND (h.to_ts IS NULL OR e.occurred_at < h.to_ts))',
                   pname) INTO held;
  END IF;
  IF uncovered > 0 OR total <> expected THEN
    RAISE EXCEPTION 'drop of partition % refused: it holds % rows, % of them not covered by a verified batch; the batches verified % rows',
      m, total, uncovered, expected USING ERRCODE = 'data_exception';
  END IF;
  IF held > 0 THEN
    RAISE EXCEPTION 'drop of partition % refused: % rows are under legal hold', m, held
      USING ERRCODE = 'object_in_use';
  END IF;
  -- The expensive check last: each batch's rows in the database are exactly the verified ones.
  FOREACH bid IN ARRAY p_batch_ids LOOP
    SELECT * INTO a FROM audit.purge_authorizations WHERE batch_id = bid;
    SELECT * INTO f FROM audit.scope_figures(a.period_from, a.period_to, a.selector_values);
    IF f.rows <> a.rows OR f.digest <> a.content_digest THEN
      RAISE EXCEPTION 'drop of partition % refused: batch % has % rows (digest %) in the database, % rows (digest %) were archived and verified',
        m, bid, f.rows, f.digest, a.rows, a.content_digest USING ERRCODE = 'data_exception';
    END IF;
  END LOOP;
  n := audit.drop_month_partition(m, expected);
  FOREACH bid IN ARRAY p_batch_ids LOOP
    SELECT * INTO a FROM audit.purge_authorizations WHERE batch_id = bid;
    INSERT INTO audit.purge_log (purge_id, batch_id, method, rows, period_from, period_to, detail)
    VALUES (bid || '#1', bid, 'partition', a.rows, m_from, m_to,
            coalesce(p_detail, '{}'::jsonb) || jsonb_build_object(
              'residual_rows', 0, 'held_by', '[]'::jsonb, 'content_digest', a.content_digest,
              'object', jsonb_build_object('bucket', a.bucket, 'key', a.object_key,
                                           'version_id', a.version_id, 'sha256', a.object_sha256)));
  END LOOP;
  RETURN n;
END $$;

REVOKE ALL ON audit.retention_floor, audit.legal_holds, audit.legal_hold_releases, audit.purge_authorizations,
  audit.purge_residual FROM PUBLIC;
REVOKE ALL ON FUNCTION audit.purge_cutoff(), audit.place_hold(text, text, text, timestamptz, timestamptz),
  audit.release_hold(text), audit.held(text, text, timestamptz),
  audit.scope_figures(timestamptz, timestamptz, text[]),
  audit.authorize_purge(text, timestamptz, timestamptz, text[], bigint, text, text, text, text, text),
  audit.purge_batch(text, text, jsonb), audit.drop_partition_authorized(date, text[], jsonb) FROM PUBLIC;

GRANT SELECT ON audit.retention_floor, audit.legal_holds, audit.legal_hold_releases, audit.active_legal_holds,
  audit.purge_authorizations TO attestly_archiver, attestly_reader, attestly_custodian;
GRANT EXECUTE ON FUNCTION audit.purge_cutoff(), audit.scope_figures(timestamptz, timestamptz, text[])
  TO attestly_archiver, attestly_reader;
GRANT EXECUTE ON FUNCTION audit.place_hold(text, text, text, timestamptz, timestamptz)
  TO attestly_archiver, attestly_custodian;
GRANT EXECUTE ON FUNCTION audit.release_hold(text) TO attestly_custodian;
GRANT EXECUTE ON FUNCTION
  audit.authorize_purge(text, timestamptz, timestamptz, text[], bigint, text, text, text, text, text),
  audit.purge_batch(text, text, jsonb), audit.drop_partition_authorized(date, text[], jsonb)
  TO attestly_archiver;
