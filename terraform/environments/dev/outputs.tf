output "artifact_bucket_name" {
  description = "Name of the artifact bucket."
  value       = module.artifact_store.bucket_name
}

output "mlflow_artifact_root" {
  description = "Value for mlflow server --default-artifact-root."
  value       = module.artifact_store.mlflow_artifact_root
}

output "raw_data_uri" {
  description = "S3 URI of the raw data partitions."
  value       = module.artifact_store.raw_data_uri
}

output "models_uri" {
  description = "S3 URI of the exported model bundles."
  value       = module.artifact_store.models_uri
}

output "artifact_read_write_policy_arn" {
  description = "Attach to the training / registry role."
  value       = module.artifact_store.read_write_policy_arn
}

output "artifact_read_only_policy_arn" {
  description = "Attach to serving roles."
  value       = module.artifact_store.read_only_policy_arn
}

output "repository_urls" {
  description = "ECR repository URL by repository name."
  value       = module.container_registry.repository_urls
}

output "lambda_function_name" {
  description = "serverless_package's function_name Param."
  value       = module.lambda_service.function_name
}

output "lambda_alias" {
  description = "serverless_package's alias Param; promote_canary's target_options.alias."
  value       = module.lambda_service.alias_name
}

output "lambda_role_arn" {
  description = "Execution role of the scoring function."
  value       = module.lambda_service.role_arn
}

output "lambda_api_endpoint" {
  description = "POST scoring requests here (SigV4-signed)."
  value       = module.lambda_service.api_endpoint
}

output "lambda_alarm_names" {
  description = "The alarms on the alias's errors and p99 duration."
  value       = [module.lambda_service.errors_alarm_name, module.lambda_service.duration_alarm_name]
}

output "gateway_url" {
  description = "DNS name of the gateway's internal load balancer (HTTPS)."
  value       = module.gateway_ecs.load_balancer_dns_name
}

output "gateway_ecs_target_options" {
  description = "target_options of a promote_canary / promote_blue_green run with target ecs."
  value = {
    cluster           = module.gateway_ecs.cluster_name
    blue_service      = module.gateway_ecs.blue_service
    green_service     = module.gateway_ecs.green_service
    listener_rule_arn = module.gateway_ecs.listener_rule_arn
  }
}

output "mwaa_source_bucket" {
  description = "Upload dags/, plugins.zip and requirements.txt here."
  value       = module.mwaa.source_bucket_name
}

output "mwaa_webserver_url" {
  description = "Host name of the Airflow UI and REST API (private)."
  value       = module.mwaa.webserver_url
}

output "ci_role_arn" {
  description = "Role for pull-request workflows (terraform plan)."
  value       = module.ci_oidc.ci_role_arn
}

output "cd_role_arn" {
  description = "Role for deploy-branch workflows (gateway image push, Airflow REST API)."
  value       = module.ci_oidc.cd_role_arn
}
