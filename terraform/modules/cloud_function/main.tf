# A Cloud Run function: the source package flightdeck builds (main.py, the handler, the model,
# requirements.txt) is built by Cloud Build on the Python runtime and runs as a revision of a
# Cloud Run service, which is what lets two revisions share the traffic.

locals {
  revision = "${var.name}-${var.revision_suffix}"
  labels = merge(var.labels, {
    "managed-by"         = "terraform"
    "flightdeck-model"   = var.model_name
    "flightdeck-version" = var.model_version
  })
}

# The identity the function runs as: it only writes its logs. The model is in the package, so
# it reads no bucket and calls no other API.
resource "google_service_account" "runtime" {
  project      = var.project
  account_id   = "${var.name}-run"
  display_name = "flightdeck function ${var.name} (runtime)"
}

resource "google_project_iam_member" "runtime_logs" {
  project = var.project
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.runtime.email}"
}

# The identity Cloud Build uses to build the source: reads the package, writes the image and
# its build logs.
resource "google_service_account" "build" {
  project      = var.project
  account_id   = "${var.name}-build"
  display_name = "flightdeck function ${var.name} (build)"
}

# Not roles/cloudbuild.builds.builder: it may act as other service accounts. These three are
# what a source build does.
resource "google_project_iam_member" "build_logs" {
  project = var.project
  role    = "roles/logging.logWriter"
  member  = "serviceAccount:${google_service_account.build.email}"
}

resource "google_project_iam_member" "build_pushes_images" {
  project = var.project
  role    = "roles/artifactregistry.writer"
  member  = "serviceAccount:${google_service_account.build.email}"
}

resource "google_storage_bucket_iam_member" "build_reads_sources" {
  bucket = var.source_bucket
  role   = "roles/storage.objectViewer"
  member = "serviceAccount:${google_service_account.build.email}"
}

resource "google_cloud_run_v2_service" "function" {
  project             = var.project
  location            = var.region
  name                = var.name
  ingress             = "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
  deletion_protection = true
  labels              = local.labels

  build_config {
    source_location = "gs://${var.source_bucket}/${var.source_object}"
    function_target = "score"
    base_image      = var.base_image
    service_account = google_service_account.build.id
  }

  template {
    revision                         = local.revision
    labels                           = local.labels
    service_account                  = google_service_account.runtime.email
    max_instance_request_concurrency = 8
    timeout                          = "10s"

    scaling {
      min_instance_count = 0
      max_instance_count = var.max_instances
    }

    containers {
      # Replaced by the image Cloud Build makes from build_config.
      image = "scratch"

      resources {
        limits = {
          cpu    = "1"
          memory = var.memory
        }
        cpu_idle = true
      }

      env {
        name  = "FLIGHTDECK_MAX_BATCH_ROWS"
        value = "1000"
      }
    }
  }

  # The traffic split: all on the latest ready revision, or the revisions and percents given.
  dynamic "traffic" {
    for_each = length(var.traffic) == 0 ? [1] : []
    content {
      type    = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
      percent = 100
    }
  }

  dynamic "traffic" {
    for_each = var.traffic
    content {
      type     = "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION"
      revision = traffic.value.revision
      percent  = traffic.value.percent
      tag      = traffic.value.tag
    }
  }
}

resource "google_cloud_run_v2_service_iam_member" "invoker" {
  for_each = toset(var.invokers)

  project  = var.project
  location = var.region
  name     = google_cloud_run_v2_service.function.name
  role     = "roles/run.invoker"
  member   = each.value
}
