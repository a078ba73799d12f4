-- A new org API key: hash for lookup, KMS ciphertext (base64 in, BYTES stored). Never plaintext.
INSERT INTO `__META_DATASET__.org_api_keys`
  (key_id, org_slug, key_hash, encrypted_key, display_prefix, scopes, name, created_at,
   expires_at)
VALUES
  (@key_id, @org_slug, @key_hash, FROM_BASE64(@encrypted_key_b64), @display_prefix, @scopes,
   @name, @created_at, @expires_at)
