-- The org's raw usage table: one row per provider request.
CREATE TABLE IF NOT EXISTS `__ORG_DATASET__.raw_usage` (
  event_day DATE,
  provider STRING,
  model STRING,
  input_tokens INT64,
  output_tokens INT64,
  cost_usd FLOAT64
)
