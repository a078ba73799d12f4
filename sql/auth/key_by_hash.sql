-- Auth lookup: the key with this SHA-256 hash and its org's status. LIMIT 1.
SELECT
  k.key_id,
  k.org_slug,
  k.scopes,
  k.name,
  UNIX_MICROS(k.expires_at) AS expires_at_micros,
  UNIX_MICROS(k.revoked_at) AS revoked_at_micros,
  p.status AS org_status
FROM `__META_DATASET__.org_api_keys` AS k
JOIN `__META_DATASET__.org_profiles` AS p
  ON p.org_slug = k.org_slug
WHERE k.key_hash = @key_hash
LIMIT 1
