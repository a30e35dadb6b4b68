output "repository_urls" {
  description = "Repository URL (registry/name) by repository name, for docker push and image references."
  value       = { for name, repo in aws_ecr_repository.this : name => repo.repository_url }
}

output "repository_arns" {
  description = "Repository ARN by repository name, for IAM policies of CI and runtime roles."
  value       = { for name, repo in aws_ecr_repository.this : name => repo.arn }
}
