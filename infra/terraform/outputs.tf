output "service_url" {
  description = "URL of the Quarry service."
  value       = google_cloud_run_v2_service.quarry.uri
}

output "service_account_email" {
  description = "Identity the service runs as."
  value       = google_service_account.quarry.email
}

output "kms_key_name" {
  description = "KMS key sealing org API keys and provider credentials (KMS_KEY_NAME)."
  value       = google_kms_crypto_key.secrets.id
}

output "meta_dataset" {
  description = "The meta dataset (META_DATASET)."
  value       = google_bigquery_dataset.meta.dataset_id
}

output "root_key_secret" {
  description = "Secret Manager secret holding CA_ROOT_API_KEY (add a version out of band)."
  value       = google_secret_manager_secret.root_key.secret_id
}
