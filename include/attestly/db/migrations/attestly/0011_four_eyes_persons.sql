-- Four eyes compare persons, not strings (issue 19, item 5: identities).
--
-- The CLI records `cli:<os user>@<host>`, the Airflow UI `ui:<airflow user>`, the older hold commands
-- `attestly-cli:<os user>`. attestly.identity_person() reduces a recorded identity to the person, exactly
-- as attestly.identity.person() does in the application: a known prefix (cli:, attestly-cli:, ui:,
-- airflow:) removed, everything from the first '@' dropped, trimmed, lower-cased. The database then
-- refuses on its own, whatever role inserts and whatever the application checked:
--   * an erasure approval given by the person who requested it (cli:alice@laptop approving, as ui:alice,
--     her own request); the check of 0004 (the same string, case-insensitively) is kept and widened by
--     replacing its function, so the trigger erasure_approval_four_eyes stays where it was;
--   * the release of a legal hold by the person who placed it.
-- Both tables are append-only already (0003/0004), so checking at INSERT covers every way in.
SET ROLE attestly_owner;

CREATE FUNCTION attestly.identity_person(p text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT lower(btrim(split_part(
    CASE WHEN btrim(coalesce(p, '')) ~ '^(cli|attestly-cli|ui|airflow):'
         THEN substr(btrim(p), strpos(btrim(p), ':') + 1)
         ELSE btrim(coalesce(p, '')) END,
    '@', 1)))
$$;
COMMENT ON FUNCTION attestly.identity_person(text) IS
  'The person behind a recorded identity (cli:alice@host, ui:alice -> alice); attestly.identity.person()';

CREATE OR REPLACE FUNCTION attestly.check_erasure_approval() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  requester text;
BEGIN
  SELECT requested_by INTO requester FROM attestly.erasure_requests WHERE request_id = NEW.request_id;
  IF lower(btrim(requester)) = lower(btrim(NEW.approved_by))
     OR (attestly.identity_person(requester) <> ''
         AND attestly.identity_person(requester) = attestly.identity_person(NEW.approved_by)) THEN
    RAISE EXCEPTION 'erasure request %: approved by % who requested it (as %); a second person must approve',
      NEW.request_id, NEW.approved_by, requester USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$;

CREATE FUNCTION attestly.check_hold_release() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  placer text;
BEGIN
  SELECT created_by INTO placer FROM attestly.legal_holds WHERE hold_id = NEW.hold_id;
  IF placer IS NOT NULL AND attestly.identity_person(placer) <> ''
     AND attestly.identity_person(placer) = attestly.identity_person(NEW.released_by) THEN
    RAISE EXCEPTION 'legal hold %: released by % who placed it (as %); a second person must release it',
      NEW.hold_id, NEW.released_by, placer USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$;

CREATE TRIGGER legal_hold_release_four_eyes BEFORE INSERT ON attestly.legal_hold_releases
  FOR EACH ROW EXECUTE FUNCTION attestly.check_hold_release();

ALTER TABLE attestly.legal_hold_releases
  ADD CONSTRAINT legal_hold_releases_releaser_clean CHECK (attestly.clean_text(released_by, 128)) NOT VALID;

-- Key destruction for a subject needs an erasure request approved by another *person* (the same comparison),
-- so a request approved before this migration by the requester under another prefix or host does not count.
CREATE OR REPLACE FUNCTION attestly.destroy_data_key(p_key_id text, p_run text) RETURNS timestamptz
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, attestly AS $$
DECLARE
  k        attestly.data_keys%ROWTYPE;
  holder   text;
  due      date;
  batches  bigint;
  today    date := (now() AT TIME ZONE 'UTC')::date;
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
  IF k.kind = 'archive' THEN
    SELECT count(*), max(b.dispose_after) INTO batches, due
      FROM attestly.archive_batches b WHERE b.key_id = p_key_id;
    IF batches = 0 THEN
      RAISE EXCEPTION 'destroy_data_key(%): refused, no archive batch is encrypted under this key', p_key_id
        USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF due > today THEN
      RAISE EXCEPTION 'destroy_data_key(%): refused before %, the end of the retention of its archives (today is %, by the database clock)',
        p_key_id, due, today USING ERRCODE = 'insufficient_privilege';
    END IF;
  ELSE
    IF NOT EXISTS (
      SELECT 1 FROM attestly.erasure_requests r
        JOIN attestly.erasure_approvals a ON a.request_id = r.request_id
       WHERE r.subject_id = k.subject_id
         AND lower(btrim(a.approved_by)) <> lower(btrim(r.requested_by))
         AND attestly.identity_person(a.approved_by) <> attestly.identity_person(r.requested_by)) THEN
      RAISE EXCEPTION 'destroy_data_key(%): refused, no approved erasure request for this subject', p_key_id
        USING ERRCODE = 'insufficient_privilege';
    END IF;
  END IF;
  PERFORM set_config('attestly.key_destroy', 'on', true);
  DELETE FROM attestly.data_key_material WHERE key_id = p_key_id;
  UPDATE attestly.data_keys SET destroyed_at = now(), destroyed_by_run = p_run WHERE key_id = p_key_id;
  PERFORM set_config('attestly.key_destroy', 'off', true);
  RETURN now();
END $$;
