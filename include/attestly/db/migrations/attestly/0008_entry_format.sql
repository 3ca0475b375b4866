-- Ledger entry formats. 1: the entry hash is SHA-256 over Python's sorted-keys JSON of
-- {seq, kind, recorded_at, body, prev_hash} (every row written before this migration); 2: over the
-- RFC 8785 (JCS) bytes of the same content plus "format": 2. The column says which form a row's
-- entry_hash was computed over, so both keep verifying; it is written once, with the row.
SET ROLE attestly_owner;

ALTER TABLE attestly.ledger
  ADD COLUMN format smallint NOT NULL DEFAULT 1 CHECK (format IN (1, 2));
