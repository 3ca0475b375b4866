-- The retention_archive purge path for batches of any size. 0001's purge_events() takes the ids as one
-- array, which does not scale to months of millions of rows; here the archiver stages the ids of the
-- verified rows in audit.purge_queue (inside its purge transaction) and purge_staged() deletes exactly
-- those rows, all or nothing. Every purge, by rows or by whole partition, writes audit.purge_log in the
-- same transaction: it is the audit database's own record of what left it, and how the archive workflow
-- tells, after a crash, whether a purge committed. `attestly archive restore` decrypts archives into
-- scratch tables in the schema archive_restore, the only place the archiver may create tables.
CREATE SCHEMA archive_restore AUTHORIZATION audit_owner;
REVOKE ALL ON SCHEMA archive_restore FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA archive_restore TO attestly_archiver;
GRANT USAGE ON SCHEMA archive_restore TO attestly_reader;

SET ROLE audit_owner;

CREATE TABLE audit.purge_queue (
  purge_id    text        NOT NULL,
  id          uuid        NOT NULL,
  occurred_at timestamptz NOT NULL
);
CREATE INDEX purge_queue_purge ON audit.purge_queue (purge_id);
COMMENT ON TABLE audit.purge_queue IS
  'Ids staged by the archiver for audit.purge_staged(); filled and emptied inside one transaction';

CREATE TABLE audit.purge_log (
  purge_id     text        PRIMARY KEY,
  method       text        NOT NULL CHECK (method IN ('rows', 'partition')),
  rows         bigint      NOT NULL CHECK (rows >= 0),
  period_from  timestamptz NOT NULL,
  period_to    timestamptz NOT NULL,
  detail       jsonb       NOT NULL DEFAULT '{}'::jsonb,
  purged_at    timestamptz NOT NULL DEFAULT now(),
  purged_by    text        NOT NULL DEFAULT session_user
);

CREATE FUNCTION audit.refuse_log_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit.purge_log is append-only: % refused for role %', TG_OP, session_user
    USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER purge_log_append_only BEFORE UPDATE OR DELETE ON audit.purge_log
  FOR EACH ROW EXECUTE FUNCTION audit.refuse_log_change();
CREATE TRIGGER purge_log_no_truncate BEFORE TRUNCATE ON audit.purge_log
  FOR EACH STATEMENT EXECUTE FUNCTION audit.refuse_log_change();

-- Delete exactly the rows staged under p_purge_id (all inside [p_from, p_to)), refuse unless exactly
-- p_expected rows were staged and deleted, and log the purge. Runs once per purge id.
CREATE FUNCTION audit.purge_staged(p_purge_id text, p_from timestamptz, p_to timestamptz,
                                   p_expected bigint, p_detail jsonb)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, audit AS $$
DECLARE
  staged  bigint;
  outside bigint;
  n       bigint;
BEGIN
  IF EXISTS (SELECT 1 FROM audit.purge_log WHERE purge_id = p_purge_id) THEN
    RAISE EXCEPTION 'purge % was already done', p_purge_id USING ERRCODE = 'unique_violation';
  END IF;
  SELECT count(*), count(*) FILTER (WHERE occurred_at < p_from OR occurred_at >= p_to)
    INTO staged, outside FROM audit.purge_queue WHERE purge_id = p_purge_id;
  IF staged <> p_expected OR outside <> 0 THEN
    RAISE EXCEPTION 'purge % refused: % rows staged (% outside % .. %), % expected',
      p_purge_id, staged, outside, p_from, p_to, p_expected USING ERRCODE = 'data_exception';
  END IF;
  PERFORM set_config('audit.purge_in_progress', 'on', true);
  DELETE FROM audit.events e USING audit.purge_queue q
   WHERE q.purge_id = p_purge_id AND e.id = q.id AND e.occurred_at = q.occurred_at
     AND e.occurred_at >= p_from AND e.occurred_at < p_to;
  GET DIAGNOSTICS n = ROW_COUNT;
  PERFORM set_config('audit.purge_in_progress', 'off', true);
  IF n <> p_expected THEN
    RAISE EXCEPTION 'purge % refused: % rows matched, % were verified', p_purge_id, n, p_expected
      USING ERRCODE = 'data_exception';
  END IF;
  DELETE FROM audit.purge_queue WHERE purge_id = p_purge_id;
  INSERT INTO audit.purge_log (purge_id, method, rows, period_from, period_to, detail)
  VALUES (p_purge_id, 'rows', n, p_from, p_to, coalesce(p_detail, '{}'::jsonb));
  RETURN n;
END $$;

-- Drop a whole month partition when every row in it was archived and verified: p_purge_ids / p_counts
-- name the batches (and their verified row counts) the partition holds; their sum must be exactly the
-- partition's row count (audit.drop_month_partition checks it under an ACCESS EXCLUSIVE lock).
CREATE FUNCTION audit.drop_partition_logged(p_month date, p_purge_ids text[], p_counts bigint[],
                                            p_detail jsonb)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, audit AS $$
DECLARE
  m        date := date_trunc('month', p_month)::date;
  expected bigint;
  n        bigint;
  i        integer;
BEGIN
  IF coalesce(array_length(p_purge_ids, 1), 0) = 0
     OR array_length(p_purge_ids, 1) <> coalesce(array_length(p_counts, 1), 0) THEN
    RAISE EXCEPTION 'drop of partition % refused: % purge ids for % counts', m,
      coalesce(array_length(p_purge_ids, 1), 0), coalesce(array_length(p_counts, 1), 0)
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF EXISTS (SELECT 1 FROM audit.purge_log WHERE purge_id = ANY(p_purge_ids)) THEN
    RAISE EXCEPTION 'drop of partition % refused: a purge among % was already done', m, p_purge_ids
      USING ERRCODE = 'unique_violation';
  END IF;
  SELECT sum(c) INTO expected FROM unnest(p_counts) c;
  n := audit.drop_month_partition(m, expected);
  IF n <> expected THEN
    RAISE EXCEPTION 'drop of partition % refused: % rows dropped, % verified', m, n, expected
      USING ERRCODE = 'data_exception';
  END IF;
  FOR i IN 1 .. array_length(p_purge_ids, 1) LOOP
    INSERT INTO audit.purge_log (purge_id, method, rows, period_from, period_to, detail)
    VALUES (p_purge_ids[i], 'partition', p_counts[i],
            (m::timestamp AT TIME ZONE 'UTC'), ((m + interval '1 month')::timestamp AT TIME ZONE 'UTC'),
            coalesce(p_detail, '{}'::jsonb));
  END LOOP;
  RETURN n;
END $$;

REVOKE ALL ON audit.purge_queue, audit.purge_log FROM PUBLIC;
REVOKE ALL ON FUNCTION audit.purge_staged(text, timestamptz, timestamptz, bigint, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION audit.drop_partition_logged(date, text[], bigint[], jsonb) FROM PUBLIC;
GRANT SELECT, INSERT ON audit.purge_queue TO attestly_archiver;
GRANT SELECT ON audit.purge_log TO attestly_archiver, attestly_reader;
GRANT EXECUTE ON FUNCTION audit.purge_staged(text, timestamptz, timestamptz, bigint, jsonb) TO attestly_archiver;
GRANT EXECUTE ON FUNCTION audit.drop_partition_logged(date, text[], bigint[], jsonb) TO attestly_archiver;
