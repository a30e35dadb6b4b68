terraform {
  required_version = ">= 1.6"

  required_providers {
    google = {
      source = "hashicorp/google"
      # google_cloud_run_v2_service's build_config (functions built from source) needs 6.x.
      version = "~> 6.0"
    }
  }
}
