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
