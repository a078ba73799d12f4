variable "project_id" {
  description = "GCP project that runs Quarry and holds its BigQuery datasets."
  type        = string
}

variable "region" {
  description = "Region of the Cloud Run service and the KMS key ring."
  type        = string
  default     = "europe-west1"
}

variable "bigquery_location" {
  description = "BigQuery location of the meta dataset and of every org dataset Quarry creates."
  type        = string
  default     = "EU"
}

variable "meta_dataset" {
  description = "Dataset holding Quarry's meta tables (META_DATASET)."
  type        = string
  default     = "organizations"
}

variable "image" {
  description = "Container image of the service (built from infra/Dockerfile)."
  type        = string
}

variable "service_name" {
  description = "Name of the Cloud Run service and prefix of the other resources."
  type        = string
  default     = "quarry"
}

variable "min_instances" {
  description = "Instances kept warm (at least 1 so the reaper and heartbeats keep running)."
  type        = number
  default     = 1
}

variable "max_instances" {
  description = "Upper bound of instances."
  type        = number
  default     = 10
}

variable "concurrency" {
  description = "Requests one instance serves at once."
  type        = number
  default     = 80
}

variable "cpu" {
  description = "CPU per instance."
  type        = string
  default     = "1"
}

variable "memory" {
  description = "Memory per instance."
  type        = string
  default     = "1Gi"
}

variable "kms_rotation_period" {
  description = "Rotation period of the secrets key (seconds, with an s suffix)."
  type        = string
  default     = "7776000s"
}

variable "cors_origins" {
  description = "Comma-separated origins allowed by CORS (never *)."
  type        = string
  default     = ""
}

variable "shutdown_grace_seconds" {
  description = "How long SIGTERM lets runs finish. Cloud Run sends SIGKILL 10 s after SIGTERM; shutdown needs up to 5 s more (cancelled runs end, slots released, logs flushed), so keep this at 5 or below."
  type        = number
  default     = 4
  validation {
    condition     = var.shutdown_grace_seconds >= 0 && var.shutdown_grace_seconds <= 5
    error_message = "shutdown_grace_seconds must be 0 to 5: grace plus 5 s of cleanup must fit in Cloud Run's 10 s."
  }
}
