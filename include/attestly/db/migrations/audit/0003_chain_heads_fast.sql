-- chain_heads() in 0001 evaluated a correlated max(occurred_at) for every row of every source
-- (quadratic: minutes on a few hundred thousand rows). One pass per source with the (source, seq) index:
-- the head is the highest seq (the first row written with it), and max(occurred_at) is one aggregate.
SET ROLE audit_owner;

CREATE OR REPLACE FUNCTION audit.chain_heads()
RETURNS TABLE (source text, seq bigint, row_hash bytea, occurred_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, audit AS $$
  WITH last_seen AS (
    SELECT e.source, max(e.occurred_at) AS occurred_at FROM audit.events e GROUP BY e.source
  )
  SELECT l.source, h.seq, h.row_hash, l.occurred_at
  FROM last_seen l
  CROSS JOIN LATERAL (
    SELECT e.seq, e.row_hash FROM audit.events e
    WHERE e.source = l.source
    ORDER BY e.seq DESC, e.recorded_at ASC, e.id
    LIMIT 1
  ) h
$$;
REVOKE ALL ON FUNCTION audit.chain_heads() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit.chain_heads() TO audit_writer;
