-- The stored ciphertext of one key of one org (base64), for integrity checks. LIMIT 1.
SELECT key_id, TO_BASE64(encrypted_key) AS encrypted_key_b64, key_hash
FROM `__META_DATASET__.org_api_keys`
WHERE org_slug = @org_slug
  AND key_id = @key_id
LIMIT 1
