output "environment_name" {
  description = "Name of the MWAA environment."
  value       = aws_mwaa_environment.this.name
}

output "environment_arn" {
  description = "ARN of the MWAA environment."
  value       = aws_mwaa_environment.this.arn
}

output "webserver_url" {
  description = "Host name of the Airflow web server and REST API (private)."
  value       = aws_mwaa_environment.this.webserver_url
}

output "source_bucket_name" {
  description = "Bucket holding dags/, plugins.zip and requirements.txt."
  value       = aws_s3_bucket.source.id
}

output "source_bucket_arn" {
  description = "ARN of the source bucket."
  value       = aws_s3_bucket.source.arn
}

output "execution_role_arn" {
  description = "Execution role of the environment."
  value       = aws_iam_role.execution.arn
}

output "security_group_id" {
  description = "Security group of the environment (allow it on the gateway's load balancer)."
  value       = aws_security_group.this.id
}
