-- Key registry, archive journal and legal holds (attestly_db). Everything here is history: rows are
-- inserted and never updated or deleted, with two exceptions, both only through SECURITY DEFINER
-- functions owned by attestly_owner (the application role has no UPDATE or DELETE privilege at all):
--   * attestly.destroy_data_key() deletes a key's wrapped material (crypto-shredding) and stamps
--     destroyed_at / destroyed_by_run on the registry row, which stays as the record that the key existed;
--   * nothing else.
SET ROLE attestly_owner;

-- ----------------------------------------------------------------------------------------- key registry

-- One row per data key ever created. kind 'archive': one per (retention class, month), wrapped by a KMS
-- key dedicated to that scope; kind 'subject': one per data subject for PHI, wrapped by the shared PHI KMS
-- key. The wrapped key itself lives in data_key_material (deleted on destruction).
CREATE TABLE attestly.data_keys (
  key_id            text        PRIMARY KEY CHECK (key_id ~ '^(archive|subject)/[A-Za-z0-9._+/-]{1,200}$'),
  kind              text        NOT NULL CHECK (kind IN ('archive', 'subject')),
  class_name        text,
  month             date        CHECK (month IS NULL OR extract(day FROM month) = 1),
  subject_id        text,
  kms_key_id        text        NOT NULL,  -- KMS key ARN that wraps this data key
  dedicated_kms_key boolean     NOT NULL,  -- true: the KMS key serves this scope only (disposal may delete it)
  algorithm         text        NOT NULL DEFAULT 'AES_256' CHECK (algorithm = 'AES_256'),
  created_at        timestamptz NOT NULL DEFAULT now(),
  created_by        text        NOT NULL DEFAULT session_user,
  destroyed_at      timestamptz,
  destroyed_by_run  text,
  CHECK ((kind = 'archive' AND class_name IS NOT NULL AND month IS NOT NULL AND subject_id IS NULL)
      OR (kind = 'subject' AND subject_id IS NOT NULL AND class_name IS NULL AND month IS NULL)),
  CHECK ((destroyed_at IS NULL) = (destroyed_by_run IS NULL))
);
CREATE UNIQUE INDEX data_keys_archive_scope ON attestly.data_keys (class_name, month) WHERE kind = 'archive';
CREATE UNIQUE INDEX data_keys_live_subject ON attestly.data_keys (subject_id)
  WHERE kind = 'subject' AND destroyed_at IS NULL;
COMMENT ON TABLE attestly.data_keys IS
  'Key registry: one row per data key ever created; the wrapped key is in data_key_material until destroyed';

CREATE TABLE attestly.data_key_material (
  key_id             text  PRIMARY KEY REFERENCES attestly.data_keys (key_id),
  wrapped_key        bytea NOT NULL CHECK (octet_length(wrapped_key) > 32),  -- KMS CiphertextBlob, never plaintext
  encryption_context jsonb NOT NULL
);
COMMENT ON TABLE attestly.data_key_material IS
  'Wrapped data keys (KMS CiphertextBlob). A row is deleted only by attestly.destroy_data_key()';

-- ------------------------------------------------------------------------------------------ legal holds

CREATE TABLE attestly.legal_holds (
  hold_id     text        PRIMARY KEY CHECK (hold_id ~ '^hold-[0-9a-f]{12}$'),
  reason      text        NOT NULL CHECK (length(btrim(reason)) > 0),
  source      text,
  subject_id  text,
  from_ts     timestamptz,
  to_ts       timestamptz,
  created_at  timestamptz NOT NULL DEFAULT now(),
  created_by  text        NOT NULL DEFAULT session_user,
  CHECK (source IS NOT NULL OR subject_id IS NOT NULL OR from_ts IS NOT NULL OR to_ts IS NOT NULL),
  CHECK (from_ts IS NULL OR to_ts IS NULL OR from_ts < to_ts)
);

CREATE TABLE attestly.legal_hold_releases (
  hold_id      text        PRIMARY KEY REFERENCES attestly.legal_holds (hold_id),
  reason       text        NOT NULL,
  released_at  timestamptz NOT NULL DEFAULT now(),
  released_by  text        NOT NULL DEFAULT session_user
);

CREATE VIEW attestly.active_legal_holds AS
  SELECT h.* FROM attestly.legal_holds h
  WHERE NOT EXISTS (SELECT 1 FROM attestly.legal_hold_releases r WHERE r.hold_id = h.hold_id);

-- -------------------------------------------------------------------------------------- archive journal

CREATE TABLE attestly.archive_batches (
  batch_id         text        PRIMARY KEY,
  source_table     text        NOT NULL,            -- schema.table of the audit log
  class_name       text        NOT NULL,            -- a class, or 'a+b' for rows in several classes
  classes          text[]      NOT NULL,
  selector_column  text        NOT NULL,            -- logical column (e.g. standard)
  selector_values  text[]      NOT NULL,
  month            date        NOT NULL CHECK (extract(day FROM month) = 1),
  online_until     date        NOT NULL,
  dispose_after    date        NOT NULL,
  retain_until     timestamptz NOT NULL,
  key_id           text        NOT NULL REFERENCES attestly.data_keys (key_id),
  bucket           text        NOT NULL,
  object_key       text        NOT NULL,
  planned_at       timestamptz NOT NULL DEFAULT now(),
  planned_by       text        NOT NULL,
  UNIQUE (source_table, class_name, month),
  UNIQUE (bucket, object_key)
);
CREATE INDEX archive_batches_key ON attestly.archive_batches (key_id);

-- State transitions of each batch: planned -> uploaded -> verified -> purged (-> purged again when rows
-- that were held online are purged after their hold is released).
CREATE TABLE attestly.archive_journal (
  batch_id  text        NOT NULL REFERENCES attestly.archive_batches (batch_id),
  step      integer     NOT NULL CHECK (step > 0),
  state     text        NOT NULL CHECK (state IN ('planned', 'uploaded', 'verified', 'purged')),
  at        timestamptz NOT NULL DEFAULT now(),
  run_id    text        NOT NULL,
  details   jsonb       NOT NULL DEFAULT '{}'::jsonb,
  PRIMARY KEY (batch_id, step)
);

CREATE FUNCTION attestly.check_archive_transition() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  prev_step  integer;
  prev_state text;
BEGIN
  SELECT step, state INTO prev_step, prev_state FROM attestly.archive_journal
   WHERE batch_id = NEW.batch_id ORDER BY step DESC LIMIT 1;
  IF NOT FOUND THEN
    IF NEW.state <> 'planned' OR NEW.step <> 1 THEN
      RAISE EXCEPTION 'archive batch %: the first journal entry must be planned at step 1, not % at step %',
        NEW.batch_id, NEW.state, NEW.step USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
  END IF;
  IF NEW.step <> prev_step + 1 THEN
    RAISE EXCEPTION 'archive batch %: step % does not follow step %', NEW.batch_id, NEW.step, prev_step
      USING ERRCODE = 'check_violation';
  END IF;
  IF NOT ((prev_state = 'planned' AND NEW.state = 'uploaded')
       OR (prev_state = 'uploaded' AND NEW.state = 'verified')
       OR (prev_state = 'verified' AND NEW.state = 'purged')
       OR (prev_state = 'purged' AND NEW.state = 'purged')) THEN
    RAISE EXCEPTION 'archive batch %: % -> % is not a valid transition', NEW.batch_id, prev_state, NEW.state
      USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$;

CREATE TRIGGER archive_journal_transition BEFORE INSERT ON attestly.archive_journal
  FOR EACH ROW EXECUTE FUNCTION attestly.check_archive_transition();

CREATE VIEW attestly.archive_state AS
  SELECT DISTINCT ON (j.batch_id) j.batch_id, j.step, j.state, j.at, j.run_id, j.details
  FROM attestly.archive_journal j
  ORDER BY j.batch_id, j.step DESC;

-- Distinct data subjects in each archived batch (to place S3 legal holds for subject holds precisely).
CREATE TABLE attestly.archive_batch_subjects (
  batch_id   text NOT NULL REFERENCES attestly.archive_batches (batch_id),
  subject_id text NOT NULL,
  PRIMARY KEY (batch_id, subject_id)
);
CREATE INDEX archive_batch_subjects_subject ON attestly.archive_batch_subjects (subject_id);

-- Which hold covers which archived batch (and so which object carries an S3 legal hold because of it).
CREATE TABLE attestly.legal_hold_batches (
  hold_id     text        NOT NULL REFERENCES attestly.legal_holds (hold_id),
  batch_id    text        NOT NULL REFERENCES attestly.archive_batches (batch_id),
  applied_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (hold_id, batch_id)
);

-- ------------------------------------------------------------------------------------------ guards

CREATE FUNCTION attestly.guard_key_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF current_user = 'attestly_owner' AND current_setting('attestly.key_destroy', true) = 'on' THEN
    IF TG_TABLE_NAME = 'data_key_material' AND TG_OP = 'DELETE' THEN
      RETURN OLD;
    END IF;
    IF TG_TABLE_NAME = 'data_keys' AND TG_OP = 'UPDATE'
       AND OLD.destroyed_at IS NULL AND NEW.destroyed_at IS NOT NULL
       AND (to_jsonb(NEW) - 'destroyed_at' - 'destroyed_by_run')
         = (to_jsonb(OLD) - 'destroyed_at' - 'destroyed_by_run') THEN
      RETURN NEW;
    END IF;
  END IF;
  RAISE EXCEPTION '%.%: % refused for role % (keys are destroyed only by attestly.destroy_data_key)',
    TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP, session_user USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER data_keys_guard BEFORE UPDATE OR DELETE ON attestly.data_keys
  FOR EACH ROW EXECUTE FUNCTION attestly.guard_key_change();
CREATE TRIGGER data_keys_no_truncate BEFORE TRUNCATE ON attestly.data_keys
  FOR EACH STATEMENT EXECUTE FUNCTION attestly.refuse_change();
CREATE TRIGGER data_key_material_guard BEFORE UPDATE OR DELETE ON attestly.data_key_material
  FOR EACH ROW EXECUTE FUNCTION attestly.guard_key_change();
CREATE TRIGGER data_key_material_no_truncate BEFORE TRUNCATE ON attestly.data_key_material
  FOR EACH STATEMENT EXECUTE FUNCTION attestly.refuse_change();

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['legal_holds', 'legal_hold_releases', 'archive_batches', 'archive_journal',
                           'archive_batch_subjects', 'legal_hold_batches'] LOOP
    EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON attestly.%I
                    FOR EACH ROW EXECUTE FUNCTION attestly.refuse_change()', t || '_append_only', t);
    EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON attestly.%I
                    FOR EACH STATEMENT EXECUTE FUNCTION attestly.refuse_change()', t || '_no_truncate', t);
  END LOOP;
END $$;

-- ------------------------------------------------------------------------------------- destruction

-- Crypto-shred one data key: delete its wrapped material and stamp the registry row, in one statement's
-- transaction. Idempotent (a destroyed key returns its original destroyed_at). Refused while a legal hold
-- covers the key: a subject hold for a subject key; a hold on any archived batch encrypted under an
-- archive key. Scheduling deletion of the KMS key is the caller's job (a KMS call, not a database one).
CREATE FUNCTION attestly.destroy_data_key(p_key_id text, p_run text) RETURNS timestamptz
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, attestly AS $$
DECLARE
  k      attestly.data_keys%ROWTYPE;
  holder text;
BEGIN
  IF p_run IS NULL OR btrim(p_run) = '' THEN
    RAISE EXCEPTION 'destroy_data_key(%): the run that destroys the key must be named', p_key_id
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  SELECT * INTO k FROM attestly.data_keys WHERE key_id = p_key_id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'destroy_data_key: no data key %', p_key_id USING ERRCODE = 'no_data_found';
  END IF;
  IF k.destroyed_at IS NOT NULL THEN
    RETURN k.destroyed_at;
  END IF;
  IF k.kind = 'subject' THEN
    SELECT h.hold_id INTO holder FROM attestly.active_legal_holds h WHERE h.subject_id = k.subject_id LIMIT 1;
  ELSE
    SELECT hb.hold_id INTO holder
      FROM attestly.legal_hold_batches hb
      JOIN attestly.archive_batches b ON b.batch_id = hb.batch_id
      JOIN attestly.active_legal_holds h ON h.hold_id = hb.hold_id
     WHERE b.key_id = p_key_id LIMIT 1;
  END IF;
  IF holder IS NOT NULL THEN
    RAISE EXCEPTION 'destroy_data_key(%): blocked by legal hold %', p_key_id, holder
      USING ERRCODE = 'object_in_use';
  END IF;
  PERFORM set_config('attestly.key_destroy', 'on', true);
  DELETE FROM attestly.data_key_material WHERE key_id = p_key_id;
  UPDATE attestly.data_keys SET destroyed_at = now(), destroyed_by_run = p_run WHERE key_id = p_key_id;
  PERFORM set_config('attestly.key_destroy', 'off', true);
  RETURN now();
END $$;

REVOKE ALL ON FUNCTION attestly.destroy_data_key(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION attestly.destroy_data_key(text, text) TO attestly_app;

GRANT SELECT, INSERT ON attestly.data_keys, attestly.data_key_material, attestly.legal_holds,
  attestly.legal_hold_releases, attestly.archive_batches, attestly.archive_journal,
  attestly.archive_batch_subjects, attestly.legal_hold_batches TO attestly_app;
GRANT SELECT ON attestly.active_legal_holds, attestly.archive_state TO attestly_app;
