-- A scanner's raw output (Prowler OCSF, Security Hub ASFF) is stored write-once and ledgered as kind
-- 'scan' (attestly verify re-hashes it at its recorded version).
SET ROLE attestly_owner;

ALTER TABLE attestly.ledger DROP CONSTRAINT ledger_kind_check;
ALTER TABLE attestly.ledger ADD CONSTRAINT ledger_kind_check CHECK (kind IN ('evidence', 'run', 'hold',
  'hold_release', 'archive', 'disposal', 'erasure', 'report', 'note', 'refusal', 'scan'));
