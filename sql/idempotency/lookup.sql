-- A stored result for (org, operation, Idempotency-Key) from the last 24 hours. LIMIT 1.
SELECT request_hash, resource_id, response
FROM `__META_DATASET__.idempotency_keys`
WHERE org_slug = @org_slug
  AND scope = @scope
  AND idempotency_key = @idempotency_key
  AND created_at >= TIMESTAMP_SUB(@now, INTERVAL 1 DAY)
ORDER BY created_at
LIMIT 1
