-- The key registry refuses to destroy a key before it is due, by this server's clock, whatever the caller
-- says (the application computes what is due, but a run can carry any date and a role can be misused):
--   * an archive key only once every archive batch encrypted under it has reached its dispose-after date
--     (the dates recorded when the batches were planned; nobody can change them), and never a key no
--     batch uses;
--   * a subject key only while an erasure request for that subject is approved by a second person.
-- And what people type into the permanent record (erasure requests, approvals, holds) is bounded and free of
-- control and bidi-override characters (NOT VALID: rows written before this migration are not re-checked).
SET ROLE attestly_owner;

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
         AND lower(btrim(a.approved_by)) <> lower(btrim(r.requested_by))) THEN
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

-- Free text that becomes permanent: bounded, printable, no bidi overrides or other format characters.
CREATE FUNCTION attestly.clean_text(p text, p_max integer) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
  SELECT p IS NOT NULL AND length(btrim(p)) > 0 AND length(p) <= p_max
     AND p !~ '[\u0001-\u001f\u007f-\u009f\u061c\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]'
$$;

ALTER TABLE attestly.erasure_requests
  ADD CONSTRAINT erasure_requests_subject_clean CHECK (attestly.clean_text(subject_id, 128)
    AND subject_id !~ '\s') NOT VALID,
  ADD CONSTRAINT erasure_requests_reason_clean CHECK (attestly.clean_text(reason, 500)) NOT VALID,
  ADD CONSTRAINT erasure_requests_requester_clean CHECK (attestly.clean_text(requested_by, 128)) NOT VALID;
ALTER TABLE attestly.erasure_approvals
  ADD CONSTRAINT erasure_approvals_approver_clean CHECK (attestly.clean_text(approved_by, 128)) NOT VALID;
ALTER TABLE attestly.legal_holds
  ADD CONSTRAINT legal_holds_reason_clean CHECK (attestly.clean_text(reason, 500)) NOT VALID,
  ADD CONSTRAINT legal_holds_subject_clean
    CHECK (subject_id IS NULL OR (attestly.clean_text(subject_id, 128) AND subject_id !~ '\s')) NOT VALID,
  ADD CONSTRAINT legal_holds_source_clean
    CHECK (source IS NULL OR (attestly.clean_text(source, 128) AND source !~ '\s')) NOT VALID;
ALTER TABLE attestly.legal_hold_releases
  ADD CONSTRAINT legal_hold_releases_reason_clean CHECK (attestly.clean_text(reason, 500)) NOT VALID;

-- A refused destructive run (dated after the trusted current time) is itself a ledger entry.
ALTER TABLE attestly.ledger DROP CONSTRAINT ledger_kind_check;
ALTER TABLE attestly.ledger ADD CONSTRAINT ledger_kind_check CHECK (kind IN ('evidence', 'run', 'hold',
  'hold_release', 'archive', 'disposal', 'erasure', 'report', 'note', 'refusal'));
