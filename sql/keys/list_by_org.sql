-- Key metadata of one org, newest first, one page: the keys strictly after the cursor
-- (created_at micros, key_id) in that order, when one is given. Never the hash or the ciphertext.
SELECT
  key_id,
  display_prefix,
  scopes,
  name,
  UNIX_MICROS(created_at) AS created_at_micros,
  UNIX_MICROS(expires_at) AS expires_at_micros,
  UNIX_MICROS(revoked_at) AS revoked_at_micros,
  UNIX_MICROS(last_used_at) AS last_used_at_micros
FROM `__META_DATASET__.org_api_keys`
WHERE org_slug = @org_slug
  AND (
    @after_micros IS NULL
    OR UNIX_MICROS(created_at) < @after_micros
    OR (UNIX_MICROS(created_at) = @after_micros AND key_id > @after_key_id)
  )
ORDER BY created_at DESC, key_id
LIMIT @page_size
