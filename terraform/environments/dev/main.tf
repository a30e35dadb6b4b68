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

# --- the platform: network, the gateway on ECS, managed Airflow, CI/CD roles ------------------

# The zones are named, so a zone AWS adds later never shifts the subnets.
data "aws_availability_zones" "available" {
  state = "available"

  filter {
    name   = "zone-name"
    values = [for suffix in var.zone_suffixes : "${var.aws_region}${suffix}"]
  }
}

module "network" {
  source = "../../modules/network"

  name               = var.name_prefix
  cidr_block         = var.vpc_cidr_block
  availability_zones = data.aws_availability_zones.available.names
  zone_count         = length(var.zone_suffixes)
  single_nat_gateway = var.single_nat_gateway
  log_retention_days = var.log_retention_days
}

# The gateway behind an internal ALB with blue and green services; releases with target ecs
# move the weighted rule (see outputs gateway_ecs_target_options).
module "gateway_ecs" {
  source = "../../modules/gateway_ecs"

  name                 = "${var.name_prefix}-gw"
  image                = "${module.container_registry.repository_urls["${var.name_prefix}-gateway"]}:${var.gateway_image_tag}"
  repository_arn       = module.container_registry.repository_arns["${var.name_prefix}-gateway"]
  model_name           = var.gateway_model_name
  model_version        = var.gateway_model_version
  environment          = var.gateway_environment
  artifact_bucket_arn  = module.artifact_store.bucket_arn
  artifact_kms_key_arn = module.artifact_store.kms_key_arn
  # MLflow's artifact root, where the registered ONNX models lie.
  model_artifacts_prefix = trimprefix(module.artifact_store.mlflow_artifact_root, "s3://${module.artifact_store.bucket_name}/")
  vpc_id                 = module.network.vpc_id
  private_subnet_ids     = module.network.private_subnet_ids
  public_subnet_ids      = module.network.public_subnet_ids
  allowed_cidr_blocks    = [module.network.vpc_cidr_block]
  certificate_arn        = var.gateway_certificate_arn
  access_logs_bucket     = var.gateway_access_logs_bucket
  min_tasks              = var.gateway_min_tasks
  max_tasks              = var.gateway_max_tasks
  log_retention_days     = var.log_retention_days
}

# Airflow running the DAGs: they read and write the artifact bucket and release on the gateway.
module "mwaa" {
  source = "../../modules/mwaa"

  name                           = "${var.name_prefix}-airflow"
  bucket_name                    = "airflow-${var.name_prefix}"
  airflow_version                = var.mwaa_airflow_version
  environment_class              = var.mwaa_environment_class
  plugins_s3_object_version      = var.mwaa_plugins_object_version
  requirements_s3_object_version = var.mwaa_requirements_object_version
  vpc_id                         = module.network.vpc_id
  private_subnet_ids             = module.network.private_subnet_ids
  force_destroy                  = var.force_destroy
  extra_policy_arns = {
    artifacts       = module.artifact_store.read_write_policy_arn
    gateway_release = module.gateway_ecs.release_policy_arn
  }
}

module "ci_oidc" {
  source = "../../modules/ci_oidc"

  name                  = var.name_prefix
  github_repository     = var.github_repository
  deploy_branches       = var.deploy_branches
  push_repository_arns  = [module.container_registry.repository_arns["${var.name_prefix}-gateway"]]
  mwaa_environment_name = module.mwaa.environment_name
  state_bucket_arn      = var.state_bucket_arn
}
