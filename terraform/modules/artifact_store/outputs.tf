output "bucket_name" {
  description = "Name of the artifact bucket."
  value       = aws_s3_bucket.artifacts.id
}

output "bucket_arn" {
  description = "ARN of the artifact bucket."
  value       = aws_s3_bucket.artifacts.arn
}

output "kms_key_arn" {
  description = "ARN of the KMS key that encrypts the bucket."
  value       = module.key.arn
}

output "mlflow_artifact_root" {
  description = "Value for mlflow server --default-artifact-root."
  value       = "s3://${aws_s3_bucket.artifacts.id}/${var.mlflow_prefix}"
}

output "raw_data_uri" {
  description = "S3 URI under which raw data partitions are written."
  value       = "s3://${aws_s3_bucket.artifacts.id}/${var.raw_data_prefix}"
}

output "models_uri" {
  description = "S3 URI under which exported model bundles are written."
  value       = "s3://${aws_s3_bucket.artifacts.id}/${var.models_prefix}"
}

output "read_write_policy_arn" {
  description = "IAM policy to attach to the training / registry role."
  value       = aws_iam_policy.read_write.arn
}

output "read_only_policy_arn" {
  description = "IAM policy to attach to serving roles (models prefix only)."
  value       = aws_iam_policy.read_only.arn
}

output "models_prefix" {
  description = "Key prefix of the model bundles (the only prefix serving roles read)."
  value       = var.models_prefix
}
