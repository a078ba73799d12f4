-- How many keys of an org still work or will until their grace ends: not revoked yet (or
-- revoked in the future) and not expired. LIMIT 1.
SELECT COUNT(*) AS n
FROM `__META_DATASET__.org_api_keys`
WHERE org_slug = @org_slug
  AND (revoked_at IS NULL OR revoked_at > @now)
  AND (expires_at IS NULL OR expires_at > @now)
LIMIT 1
