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
