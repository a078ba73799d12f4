-- One key of one org by its id (metadata only; never the hash or the ciphertext). LIMIT 1.
SELECT
  key_id,
  display_prefix,
  scopes,
  UNIX_MICROS(created_at) AS created_at_micros,
  UNIX_MICROS(expires_at) AS expires_at_micros,
  UNIX_MICROS(revoked_at) AS revoked_at_micros,
  UNIX_MICROS(last_used_at) AS last_used_at_micros
FROM `__META_DATASET__.org_api_keys`
WHERE org_slug = @org_slug
  AND key_id = @key_id
LIMIT 1
