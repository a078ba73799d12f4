-- Every org's live alert channels, with their ciphertexts: one read shared by every run end on
-- this instance for CHANNEL_CACHE_TTL (for delivery; the API shows metadata only). At the LIMIT,
-- the orgs it leaves out are read one by one (channels_by_org.sql).
SELECT
  org_slug,
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
WHERE deleted_at IS NULL
ORDER BY org_slug, created_at, channel_id
LIMIT @limit
