-- The ledger: append-only, hash-chained. Each entry's hash covers its content and the previous entry's
-- hash (attestly.ledger in Python defines the canonical form). Digests record what was sealed into the
-- bucket. UPDATE, DELETE and TRUNCATE are refused for everyone.
SET ROLE attestly_owner;

CREATE TABLE attestly.ledger (
  seq          bigint      PRIMARY KEY CHECK (seq > 0),
  kind         text        NOT NULL CHECK (kind IN ('evidence', 'run', 'hold', 'hold_release', 'archive',
                                                    'disposal', 'erasure', 'report', 'note')),
  recorded_at  timestamptz NOT NULL,
  body         jsonb       NOT NULL,
  dedupe_key   text        UNIQUE,
  prev_hash    text        NOT NULL CHECK (prev_hash ~ '^[0-9a-f]{64}$'),
  entry_hash   text        NOT NULL UNIQUE CHECK (entry_hash ~ '^[0-9a-f]{64}$')
);
CREATE INDEX ledger_kind ON attestly.ledger (kind, seq);
CREATE INDEX ledger_evidence_period ON attestly.ledger ((body ->> 'period_start'))
  WHERE kind = 'evidence';

CREATE TABLE attestly.digests (
  first_seq    bigint      PRIMARY KEY,
  last_seq     bigint      NOT NULL UNIQUE,
  key          text        NOT NULL UNIQUE,
  version_id   text        NOT NULL,
  sha256       text        NOT NULL,
  signature    text        NOT NULL,
  merkle_root  text        NOT NULL,
  sealed_at    timestamptz NOT NULL DEFAULT now(),
  CHECK (last_seq >= first_seq)
);

CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE ON attestly.ledger
  FOR EACH ROW EXECUTE FUNCTION attestly.refuse_change();
CREATE TRIGGER ledger_no_truncate BEFORE TRUNCATE ON attestly.ledger
  FOR EACH STATEMENT EXECUTE FUNCTION attestly.refuse_change();
CREATE TRIGGER digests_append_only BEFORE UPDATE OR DELETE ON attestly.digests
  FOR EACH ROW EXECUTE FUNCTION attestly.refuse_change();
CREATE TRIGGER digests_no_truncate BEFORE TRUNCATE ON attestly.digests
  FOR EACH STATEMENT EXECUTE FUNCTION attestly.refuse_change();

GRANT SELECT, INSERT ON attestly.ledger, attestly.digests TO attestly_app;
