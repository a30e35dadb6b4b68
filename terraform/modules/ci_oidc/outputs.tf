output "ci_role_arn" {
  description = "Role GitHub Actions assumes for pull requests and branches (terraform plan)."
  value       = aws_iam_role.ci.arn
}

output "cd_role_arn" {
  description = "Role GitHub Actions assumes on the deploy branches (image push, Airflow REST API)."
  value       = aws_iam_role.cd.arn
}

output "oidc_provider_arn" {
  description = "ARN of the GitHub Actions OIDC provider."
  value       = aws_iam_openid_connect_provider.github.arn
}
