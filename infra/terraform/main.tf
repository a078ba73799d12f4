locals {
  labels = { app = var.service_name }
}

# The meta dataset. Org datasets are created by the service at onboarding.
resource "google_bigquery_dataset" "meta" {
  dataset_id                 = var.meta_dataset
  location                   = var.bigquery_location
  description                = "Quarry meta tables: orgs, keys, quotas, credentials, run and step logs, audit."
  delete_contents_on_destroy = false
  labels                     = local.labels
  # No default partition expiration: logs are kept until an operator decides otherwise.
}

# Envelope encryption of org API keys and provider credentials.
resource "google_kms_key_ring" "quarry" {
  name     = "${var.service_name}-keyring"
  location = var.region
}

resource "google_kms_crypto_key" "secrets" {
  name            = "${var.service_name}-secrets"
  key_ring        = google_kms_key_ring.quarry.id
  purpose         = "ENCRYPT_DECRYPT"
  rotation_period = var.kms_rotation_period
  lifecycle {
    prevent_destroy = true
  }
}

# The service's identity, with only what it needs.
resource "google_service_account" "quarry" {
  account_id   = "${var.service_name}-svc"
  display_name = "Quarry service"
}

# Run query jobs in the project.
resource "google_project_iam_member" "bigquery_job_user" {
  project = var.project_id
  role    = "roles/bigquery.jobUser"
  member  = "serviceAccount:${google_service_account.quarry.email}"
}

# Create org datasets at onboarding (bigquery.datasets.create). BigQuery makes the creator an
# OWNER of each dataset it creates, which is how the service can write to org datasets without a
# project-wide data editor role.
resource "google_project_iam_custom_role" "dataset_creator" {
  role_id     = replace("${var.service_name}_dataset_creator", "-", "_")
  title       = "Quarry dataset creator"
  permissions = ["bigquery.datasets.create", "bigquery.datasets.get"]
}

resource "google_project_iam_member" "dataset_creator" {
  project = var.project_id
  role    = google_project_iam_custom_role.dataset_creator.id
  member  = "serviceAccount:${google_service_account.quarry.email}"
}

# Read and write the meta tables (and create them at bootstrap).
resource "google_bigquery_dataset_iam_member" "meta_editor" {
  dataset_id = google_bigquery_dataset.meta.dataset_id
  role       = "roles/bigquery.dataEditor"
  member     = "serviceAccount:${google_service_account.quarry.email}"
}

# Encrypt and decrypt with this key only.
resource "google_kms_crypto_key_iam_member" "secrets_user" {
  crypto_key_id = google_kms_crypto_key.secrets.id
  role          = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
  member        = "serviceAccount:${google_service_account.quarry.email}"
}

# The root key. Its value is added out of band (never in Terraform state):
#   openssl rand -base64 48 | gcloud secrets versions add quarry-root-api-key --data-file=-
resource "google_secret_manager_secret" "root_key" {
  secret_id = "${var.service_name}-root-api-key"
  labels    = local.labels
  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_iam_member" "root_key_accessor" {
  secret_id = google_secret_manager_secret.root_key.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.quarry.email}"
}

resource "google_cloud_run_v2_service" "quarry" {
  name     = var.service_name
  location = var.region
  ingress  = "INGRESS_TRAFFIC_ALL"
  labels   = local.labels

  template {
    service_account                  = google_service_account.quarry.email
    max_instance_request_concurrency = var.concurrency
    timeout                          = "300s"

    scaling {
      min_instance_count = var.min_instances
      max_instance_count = var.max_instances
    }

    containers {
      image = var.image

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = var.cpu
          memory = var.memory
        }
        # CPU always allocated: runs, heartbeats and the reaper work outside requests.
        cpu_idle          = false
        startup_cpu_boost = true
      }

      env {
        name  = "ENVIRONMENT"
        value = "production"
      }
      env {
        name  = "GCP_PROJECT_ID"
        value = var.project_id
      }
      env {
        name  = "BIGQUERY_LOCATION"
        value = var.bigquery_location
      }
      env {
        name  = "META_DATASET"
        value = google_bigquery_dataset.meta.dataset_id
      }
      env {
        name  = "KMS_KEY_NAME"
        value = google_kms_crypto_key.secrets.id
      }
      env {
        name  = "BIND_ADDR"
        value = "0.0.0.0:8080"
      }
      env {
        name  = "CORS_ORIGINS"
        value = var.cors_origins
      }
      env {
        name  = "SHUTDOWN_GRACE_SECS"
        value = tostring(var.shutdown_grace_seconds)
      }
      env {
        name = "CA_ROOT_API_KEY"
        value_source {
          secret_key_ref {
            secret  = google_secret_manager_secret.root_key.secret_id
            version = "latest"
          }
        }
      }

      startup_probe {
        http_get {
          path = "/health/ready"
        }
        initial_delay_seconds = 2
        period_seconds        = 5
        failure_threshold     = 12
        timeout_seconds       = 5
      }

      liveness_probe {
        http_get {
          path = "/health/live"
        }
        period_seconds    = 15
        failure_threshold = 3
        timeout_seconds   = 3
      }
    }
  }

  depends_on = [
    google_secret_manager_secret_iam_member.root_key_accessor,
    google_kms_crypto_key_iam_member.secrets_user,
    google_bigquery_dataset_iam_member.meta_editor,
  ]
}
