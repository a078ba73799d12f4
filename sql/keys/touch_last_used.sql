-- Batched last_used_at: one statement for every key used since the last flush.
-- The org_keys parameter holds "org_slug:key_id" pairs, so the statement is scoped to each key's own org.
UPDATE `__META_DATASET__.org_api_keys`
SET last_used_at = @used_at
WHERE CONCAT(org_slug, ':', key_id) IN UNNEST(@org_keys)
  AND (last_used_at IS NULL OR last_used_at < @used_at)
