-- The audit database checks an archive batch's rows against its digest once, when the batch is
-- authorised for purge, instead of again inside the purge (attestly#17: one database-side recompute per
-- batch, not two):
--   * audit.authorize_purge() recomputes the scope's row count and block digest (audit.scope_figures)
--     and refuses an authorisation whose figures are not the rows the database holds now; it records
--     what it found and when (db_rows, db_digest, db_checked_at). The archive authorises each batch
--     while it reads the object back (verification), so this recompute overlaps the read-back;
--   * audit.drop_partition_authorized() then needs only each checked batch's row count, under its ACCESS
--     EXCLUSIVE lock on the partition: audit.events is append-only (UPDATE and DELETE are refused outside
--     the guarded purge, for every role, and so is TRUNCATE), so the only change a scope can undergo
--     after the check is a row added, which changes its count. A batch authorised before this migration
--     (unchecked) is still recomputed in full;
--   * audit.purge_batch() hashes the rows it deletes as it deletes them (DELETE ... RETURNING, with the
--     held rows it keeps) and raises, undoing the delete, unless they are exactly the authorised rows:
--     no separate scan.
SET ROLE audit_owner;

ALTER TABLE audit.purge_authorizations
  ADD COLUMN db_rows       bigint,
  ADD COLUMN db_digest     text,
  ADD COLUMN db_checked_at timestamptz;
COMMENT ON COLUMN audit.purge_authorizations.db_checked_at IS
  'When audit.authorize_purge found db_rows rows with block digest db_digest in the scope (NULL: authorised before 0005, unchecked)';

CREATE OR REPLACE FUNCTION audit.authorize_purge(p_batch_id text, p_from timestamptz, p_to timestamptz,
                                      p_values text[], p_rows bigint, p_digest text, p_bucket text,
                                      p_object_key text, p_version_id text, p_object_sha256 text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, audit AS $$
DECLARE
  a      audit.purge_authorizations%ROWTYPE;
  cutoff timestamptz := audit.purge_cutoff();
  other  text;
  f      record;
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
  -- The database's own count and digest of the scope, now: an authorisation is only ever recorded for
  -- exactly the rows the database holds.
  SELECT * INTO f FROM audit.scope_figures(p_from, p_to, p_values);
  IF f.rows <> p_rows OR f.digest <> p_digest THEN
    RAISE EXCEPTION 'purge authorisation of % refused: the database holds % rows (digest %) in its scope, the archive has % rows (digest %)',
      p_batch_id, f.rows, f.digest, p_rows, p_digest
      USING ERRCODE = 'data_exception', DETAIL = json_build_object('rows', f.rows, 'digest', f.digest)::text;
  END IF;
  INSERT INTO audit.purge_authorizations (batch_id, period_from, period_to, selector_values, rows,
    content_digest, bucket, object_key, version_id, object_sha256, db_rows, db_digest, db_checked_at)
  VALUES (p_batch_id, p_from, p_to, p_values, p_rows, p_digest, p_bucket, p_object_key, p_version_id,
    p_object_sha256, f.rows, f.digest, clock_timestamp());
END $$;

CREATE OR REPLACE FUNCTION audit.purge_batch(p_batch_id text, p_purge_id text, p_detail jsonb) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, audit AS $$
DECLARE
  a         audit.purge_authorizations%ROWTYPE;
  cutoff    timestamptz := audit.purge_cutoff();
  first     boolean;
  n         bigint;
  residual  bigint;
  held_by   text[];
  total     bigint;
  digest    text;
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
    -- Delete, and hash what is deleted as it is deleted together with the held rows kept: the scope's
    -- rows must be exactly the authorised ones, or the whole purge is undone (the exception below).
    WITH gone AS (
      DELETE FROM audit.events e
       WHERE e.occurred_at >= a.period_from AND e.occurred_at < a.period_to
         AND e.standard = ANY(a.selector_values)
         AND NOT EXISTS (SELECT 1 FROM audit.purge_residual r
                          WHERE r.batch_id = p_batch_id AND r.id = e.id AND r.occurred_at = e.occurred_at)
      RETURNING e.id, e.row_hash
    ), scope_rows AS (
      SELECT g.id, g.row_hash FROM gone g
      UNION ALL
      SELECT e.id, e.row_hash FROM audit.events e
        JOIN audit.purge_residual r ON r.batch_id = p_batch_id AND r.id = e.id AND r.occurred_at = e.occurred_at
    ), lines AS (
      SELECT s.id::text || ':' || coalesce(encode(s.row_hash, 'hex'), '') || E'\n' AS line,
             row_number() OVER (ORDER BY s.id) AS rn
        FROM scope_rows s
    ), blocks AS (
      SELECT (rn - 1) / 16384 AS b, count(*) AS k,
             sha256(convert_to(string_agg(line, '' ORDER BY rn), 'UTF8')) AS h
        FROM lines GROUP BY 1
    )
    SELECT (SELECT count(*) FROM gone), coalesce(sum(k), 0)::bigint,
           encode(sha256(coalesce(string_agg(h, ''::bytea ORDER BY b), ''::bytea)), 'hex')
      INTO n, total, digest
      FROM blocks;
    IF total <> a.rows OR digest <> a.content_digest THEN
      RAISE EXCEPTION 'purge of % refused: the database holds % rows (digest %) in its scope, % rows (digest %) were archived and verified',
        p_batch_id, total, digest, a.rows, a.content_digest USING ERRCODE = 'data_exception';
    END IF;
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

CREATE OR REPLACE FUNCTION audit.drop_partition_authorized(p_month date, p_batch_ids text[], p_detail jsonb)
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
  -- Each batch's rows in the database are exactly the verified ones. A batch whose authorisation checked
  -- its digest against this database (0005) needs only its row count, under the lock: the table is
  -- append-only, so a row added since is the only possible change, and it changes the count. Batches
  -- authorised before 0005 (unchecked) are recomputed in full.
  FOREACH bid IN ARRAY p_batch_ids LOOP
    SELECT * INTO a FROM audit.purge_authorizations WHERE batch_id = bid;
    IF a.db_checked_at IS NOT NULL AND a.db_rows = a.rows AND a.db_digest = a.content_digest THEN
      EXECUTE format('SELECT count(*) FROM audit.%I WHERE standard = ANY($1)', pname)
        INTO n USING a.selector_values;
      IF n <> a.rows THEN
        RAISE EXCEPTION 'drop of partition % refused: batch % has % rows in the database, % when its digest was checked and authorised',
          m, bid, n, a.rows USING ERRCODE = 'data_exception';
      END IF;
    ELSE
      SELECT * INTO f FROM audit.scope_figures(a.period_from, a.period_to, a.selector_values);
      IF f.rows <> a.rows OR f.digest <> a.content_digest THEN
        RAISE EXCEPTION 'drop of partition % refused: batch % has % rows (digest %) in the database, % rows (digest %) were archived and verified',
          m, bid, f.rows, f.digest, a.rows, a.content_digest USING ERRCODE = 'data_exception';
      END IF;
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
