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

# The Lambda path: the function reads its first zip from the artifact bucket's models prefix
# (upload it before the first apply of this module; see terraform/README.md).
module "lambda_service" {
  source = "../../modules/lambda_service"

  function_name        = "${var.name_prefix}-scorer"
  alias_name           = var.lambda_alias
  package_type         = var.lambda_package_type
  artifact_bucket_name = module.artifact_store.bucket_name
  artifact_bucket_arn  = module.artifact_store.bucket_arn
  artifact_kms_key_arn = module.artifact_store.kms_key_arn
  package_prefix       = "${module.artifact_store.models_prefix}/lambda/${var.name_prefix}-scorer"
  package_s3_key       = var.lambda_package_key
  image_uri            = var.lambda_image_uri
  memory_mb            = var.lambda_memory_mb
  reserved_concurrency = var.lambda_reserved_concurrency
  log_retention_days   = var.log_retention_days
  max_p99_ms           = var.lambda_max_p99_ms
  alarm_actions        = var.alarm_actions
}
