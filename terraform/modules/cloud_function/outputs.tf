output "service_name" {
  description = "The function's Cloud Run service: target_options.service of a cloud_run rollout."
  value       = google_cloud_run_v2_service.function.name
}

output "uri" {
  description = "The function's URL (internal ingress: reached through a load balancer or from the VPC)."
  value       = google_cloud_run_v2_service.function.uri
}

output "revision" {
  description = "The revision this apply deployed (<name>-<suffix>)."
  value       = local.revision
}

output "runtime_service_account" {
  description = "Email of the identity the function runs as (writes logs only)."
  value       = google_service_account.runtime.email
}
