-- Exceptions lifecycle and Type II samples (issue 19, items 4-6).
--
-- New ledger kinds: 'exception_response' (management's response to a failing item or finding: owner,
-- root cause, ticket, due date), 'exception_accept' (a second person accepts it), 'exception_close'
-- (closed by a passing re-test item) and 'sample' (a reproducible sample drawn for an auditor). None of
-- them records a stored object, so the verifiers' ledgered_objects ignore them on purpose.
--
-- The kinds are added to whatever the constraint lists when this runs (other migrations add kinds too),
-- so the order in which they are applied does not matter.
SET ROLE attestly_owner;

DO $$
DECLARE
  kinds text[];
  listed text;
BEGIN
  SELECT array_agg(DISTINCT m[1] ORDER BY m[1]) INTO kinds
    FROM pg_constraint c, regexp_matches(pg_get_constraintdef(c.oid), '''([a-z_]+)''', 'g') AS m
   WHERE c.conname = 'ledger_kind_check' AND c.conrelid = 'attestly.ledger'::regclass;
  IF kinds IS NULL OR NOT kinds @> ARRAY['evidence', 'run'] THEN
    RAISE EXCEPTION 'attestly.ledger: kind constraint ledger_kind_check not found or not a list of kinds';
  END IF;
  SELECT string_agg(quote_literal(k), ', ' ORDER BY k) INTO listed
    FROM (SELECT DISTINCT unnest(kinds || ARRAY['exception_response', 'exception_accept', 'exception_close',
                                                 'sample']) AS k) AS u;
  ALTER TABLE attestly.ledger DROP CONSTRAINT ledger_kind_check;
  EXECUTE format('ALTER TABLE attestly.ledger ADD CONSTRAINT ledger_kind_check CHECK (kind IN (%s))', listed);
END $$;

-- One overdue reminder per exception and due date: the daily task re-run sends nothing twice.
CREATE TABLE attestly.exception_reminders (
  exception_id text        NOT NULL CHECK (exception_id ~ '^EXC-[0-9a-f]{16}$'),
  due_date     date        NOT NULL,
  recipients   text[]      NOT NULL,
  message_id   text        NOT NULL,
  sent_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (exception_id, due_date)
);

GRANT SELECT, INSERT ON attestly.exception_reminders TO attestly_app;
