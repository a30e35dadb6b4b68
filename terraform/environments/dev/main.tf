provider "aws" {
  region = var.aws_region

  default_tags {
    # project and environment come last so var.tags cannot override them.
    tags = merge(var.tags, {
      project     = "flightdeck"
      environment = var.environment
    })
  }
}

module "artifact_store" {
  source = "../../modules/artifact_store"

  bucket_name                        = "${var.name_prefix}-artifacts"
  noncurrent_version_expiration_days = var.noncurrent_version_expiration_days
  force_destroy                      = var.force_destroy
}

module "container_registry" {
  source = "../../modules/container_registry"

  repository_names = [for image in var.images : "${var.name_prefix}-${image}"]
  max_image_count  = var.max_image_count
  force_delete     = var.force_destroy
}
