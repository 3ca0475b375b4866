-- Key disposal (crypto-shredding) and erasure of data subjects (attestly_db). Insert-only history, like
-- the archive journal: the application role may insert and read, never update or delete.
SET ROLE attestly_owner;

-- ------------------------------------------------------------------------------------ erasure requests

-- A request to erase a data subject's PHI (crypto-shred the subject's data keys). It is acted on only
-- once approved by someone other than the requester (four eyes), and completed by the certificate of
-- destruction that covers it.
CREATE TABLE attestly.erasure_requests (
  request_id    text        PRIMARY KEY CHECK (request_id ~ '^erase-[0-9a-f]{12}$'),
  subject_id    text        NOT NULL CHECK (length(btrim(subject_id)) > 0),
  reason        text        NOT NULL CHECK (length(btrim(reason)) > 0),
  requested_by  text        NOT NULL CHECK (length(btrim(requested_by)) > 0),
  requested_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX erasure_requests_subject ON attestly.erasure_requests (subject_id);

CREATE TABLE attestly.erasure_approvals (
  request_id   text        PRIMARY KEY REFERENCES attestly.erasure_requests (request_id),
  approved_by  text        NOT NULL CHECK (length(btrim(approved_by)) > 0),
  approved_at  timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION attestly.check_erasure_approval() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  requester text;
BEGIN
  SELECT requested_by INTO requester FROM attestly.erasure_requests WHERE request_id = NEW.request_id;
  IF lower(btrim(requester)) = lower(btrim(NEW.approved_by)) THEN
    RAISE EXCEPTION 'erasure request %: approved by its requester %; a second person must approve',
      NEW.request_id, NEW.approved_by USING ERRCODE = 'check_violation';
  END IF;
  RETURN NEW;
END $$;

CREATE TRIGGER erasure_approval_four_eyes BEFORE INSERT ON attestly.erasure_approvals
  FOR EACH ROW EXECUTE FUNCTION attestly.check_erasure_approval();

-- ----------------------------------------------------------------------------------- disposal journal

-- Per destroyed key: 'destroyed' (registry material deleted, dedicated KMS key scheduled for deletion),
-- then 'verified' (the proof that nothing decrypts any more). At most one row per state.
CREATE TABLE attestly.disposal_steps (
  key_id   text        NOT NULL REFERENCES attestly.data_keys (key_id),
  state    text        NOT NULL CHECK (state IN ('destroyed', 'verified')),
  at       timestamptz NOT NULL DEFAULT now(),
  run_id   text        NOT NULL,
  details  jsonb       NOT NULL DEFAULT '{}'::jsonb,
  PRIMARY KEY (key_id, state)
);

-- A certificate of destruction: its content is frozen here when it is issued (one transaction with the
-- keys and requests it covers), then stored as evidence and ledgered from this row, so a crash anywhere
-- after issue ends with exactly this certificate, whatever run finishes the job.
CREATE TABLE attestly.disposal_certificates (
  certificate_id  text        PRIMARY KEY CHECK (certificate_id ~ '^cod-[0-9a-f]{16}$'),
  issued_at       timestamptz NOT NULL DEFAULT now(),
  run_id          text        NOT NULL,
  body            jsonb       NOT NULL
);

-- Each destroyed key is certified once; each erasure request is completed once.
CREATE TABLE attestly.disposal_certificate_keys (
  key_id          text PRIMARY KEY REFERENCES attestly.data_keys (key_id),
  certificate_id  text NOT NULL REFERENCES attestly.disposal_certificates (certificate_id)
);

CREATE TABLE attestly.erasure_completions (
  request_id      text        PRIMARY KEY REFERENCES attestly.erasure_requests (request_id),
  certificate_id  text        NOT NULL REFERENCES attestly.disposal_certificates (certificate_id),
  completed_at    timestamptz NOT NULL DEFAULT now()
);

DO $$
DECLARE t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['erasure_requests', 'erasure_approvals', 'disposal_steps', 'disposal_certificates',
                           'disposal_certificate_keys', 'erasure_completions'] LOOP
    EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON attestly.%I
                    FOR EACH ROW EXECUTE FUNCTION attestly.refuse_change()', t || '_append_only', t);
    EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON attestly.%I
                    FOR EACH STATEMENT EXECUTE FUNCTION attestly.refuse_change()', t || '_no_truncate', t);
  END LOOP;
END $$;

GRANT SELECT, INSERT ON attestly.erasure_requests, attestly.erasure_approvals, attestly.disposal_steps,
  attestly.disposal_certificates, attestly.disposal_certificate_keys, attestly.erasure_completions
  TO attestly_app;
