-- Batched last_used_at: one statement for every key used since the last flush, each stamped with
-- its own last use. The parallel arrays hold "org_slug:key_id" pairs (so the statement is scoped
-- to each key's own org) and RFC 3339 times; parameters stay inside the FROM subquery.
UPDATE `__META_DATASET__.org_api_keys` AS k
SET last_used_at = u.used_at
FROM (
  SELECT pair, TIMESTAMP(used_at) AS used_at
  FROM UNNEST(@org_keys) AS pair WITH OFFSET AS i
  JOIN UNNEST(@used_ats) AS used_at WITH OFFSET AS j ON i = j
) AS u
WHERE CONCAT(k.org_slug, ':', k.key_id) = u.pair
  AND (k.last_used_at IS NULL OR k.last_used_at < u.used_at)
