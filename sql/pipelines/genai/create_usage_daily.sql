-- The org's daily usage table: one row per day, provider and model.
CREATE TABLE IF NOT EXISTS `__ORG_DATASET__.usage_daily` (
  day DATE,
  provider STRING,
  model STRING,
  requests INT64,
  input_tokens INT64,
  output_tokens INT64,
  cost_usd FLOAT64
)
