-- An org's live alert channels, with their ciphertexts (for delivery; the API shows metadata
-- only). LIMIT 10 (an org has at most 10).
SELECT
  channel_id,
  kind,
  TO_BASE64(encrypted_url) AS encrypted_url_b64,
  url_hint,
  TO_BASE64(encrypted_secret) AS encrypted_secret_b64,
  events,
  pipelines,
  late_after_seconds,
  queued_after_seconds,
  created_by,
  UNIX_MICROS(created_at) AS created_at_micros
FROM `__META_DATASET__.notification_channels`
WHERE org_slug = @org_slug
  AND deleted_at IS NULL
ORDER BY created_at, channel_id
LIMIT 10
