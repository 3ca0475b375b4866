-- Manual evidence (documents and sign-offs) and the reminders that chase it.
--
-- manual_statements is the intent journal of `attestly evidence add` and the UI upload: the statement
-- (the canonical evidence item, naming every attachment by SHA-256) is frozen here *before* any object
-- is written, then the attachments and the item are stored (write-once, Object Lock), then it is
-- ledgered and marked recorded. A crash anywhere leaves a pending row that the same command, or the
-- daily reminders task, completes from the frozen statement: never an object without its ledger entry
-- once completed, never a ledger entry without its objects. Insert and a single pending -> recorded
-- transition only.
SET ROLE attestly_owner;

CREATE TABLE attestly.manual_statements (
  content_key  text        PRIMARY KEY CHECK (content_key ~ '^[0-9a-f]{64}$'),
  item_sha256  text        NOT NULL UNIQUE CHECK (item_sha256 ~ '^[0-9a-f]{64}$'),
  item         bytea       NOT NULL,
  attachments  jsonb       NOT NULL,
  recorded_by  text        NOT NULL CHECK (length(btrim(recorded_by)) > 0),
  created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
  ledger_seq   bigint      REFERENCES attestly.ledger (seq),
  recorded_at  timestamptz,
  CHECK ((ledger_seq IS NULL) = (recorded_at IS NULL))
);
CREATE INDEX manual_statements_pending ON attestly.manual_statements (created_at) WHERE ledger_seq IS NULL;

CREATE FUNCTION attestly.manual_statement_once() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.ledger_seq IS NOT NULL THEN
    RAISE EXCEPTION 'manual statement %: already recorded (ledger seq %); it never changes',
      OLD.item_sha256, OLD.ledger_seq USING ERRCODE = 'check_violation';
  END IF;
  IF NEW.content_key <> OLD.content_key OR NEW.item_sha256 <> OLD.item_sha256 OR NEW.item <> OLD.item
     OR NEW.attachments <> OLD.attachments OR NEW.recorded_by <> OLD.recorded_by
     OR NEW.created_at <> OLD.created_at THEN
    RAISE EXCEPTION 'manual statement %: only its ledger_seq and recorded_at may be set',
      OLD.item_sha256 USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$;

CREATE TRIGGER manual_statement_once BEFORE UPDATE ON attestly.manual_statements
  FOR EACH ROW EXECUTE FUNCTION attestly.manual_statement_once();

-- One reminder per control, due date and kind ('due_soon' to the owner, 'overdue' to the compliance
-- team): the daily task re-run for the same day sends nothing twice.
CREATE TABLE attestly.manual_reminders (
  control_id  text        NOT NULL,
  due_date    date        NOT NULL,
  kind        text        NOT NULL CHECK (kind IN ('due_soon', 'overdue')),
  recipients  text[]      NOT NULL,
  message_id  text        NOT NULL,
  sent_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (control_id, due_date, kind)
);

GRANT SELECT, INSERT ON attestly.manual_statements, attestly.manual_reminders TO attestly_app;
GRANT UPDATE (ledger_seq, recorded_at) ON attestly.manual_statements TO attestly_app;
