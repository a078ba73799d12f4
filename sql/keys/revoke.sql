-- Revokes one key of one org at the given time (now, or the end of a rotation grace period).
-- Never moves an earlier revocation later.
UPDATE `__META_DATASET__.org_api_keys`
SET revoked_at = @revoked_at
WHERE org_slug = @org_slug
  AND key_id = @key_id
  AND (revoked_at IS NULL OR revoked_at > @revoked_at)
