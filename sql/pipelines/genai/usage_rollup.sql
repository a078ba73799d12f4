-- One row per provider and model for the day: requests, tokens, cost.
SELECT
  event_day AS day,
  provider,
  model,
  COUNT(*) AS requests,
  SUM(input_tokens) AS input_tokens,
  SUM(output_tokens) AS output_tokens,
  ROUND(SUM(cost_usd), 6) AS cost_usd
FROM `__ORG_DATASET__.raw_usage`
WHERE event_day = @day
GROUP BY event_day, provider, model
