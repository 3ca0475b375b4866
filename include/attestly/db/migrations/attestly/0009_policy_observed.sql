-- The policy in force is evidence: each distinct policy bundle (every file of the policy directory) is
-- stored write-once at policy/sha256/<hex>.json and ledgered once as kind 'policy'; `attestly verify`
-- re-hashes it at its recorded version.
--
-- observation_tries: the wall-clock moment (observed_at) each try of a task observed its sources, written
-- before the try stores any evidence. Evidence items carry observed_at, so a later try of the same task
-- finds here the exact item a killed earlier try may have stored but not ledgered, and adopts it instead
-- of storing a second copy of the same observation. Insert only.
SET ROLE attestly_owner;

ALTER TABLE attestly.ledger DROP CONSTRAINT ledger_kind_check;
ALTER TABLE attestly.ledger ADD CONSTRAINT ledger_kind_check CHECK (kind IN ('evidence', 'run', 'hold',
  'hold_release', 'archive', 'disposal', 'erasure', 'report', 'note', 'refusal', 'scan', 'policy'));

CREATE TABLE attestly.observation_tries (
  dag_id       text        NOT NULL,
  run_id       text        NOT NULL,
  task_id      text        NOT NULL,
  try_number   integer     NOT NULL CHECK (try_number >= 1),
  observed_at  timestamptz NOT NULL,
  PRIMARY KEY (dag_id, run_id, task_id, try_number, observed_at)
);

GRANT SELECT, INSERT ON attestly.observation_tries TO attestly_app;
