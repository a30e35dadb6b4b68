output "cluster_name" {
  description = "ECS cluster (target_options.cluster of a rollout with target ecs)."
  value       = aws_ecs_cluster.this.name
}

output "blue_service" {
  description = "Name of the blue service (target_options.blue_service)."
  value       = aws_ecs_service.colour["blue"].name
}

output "green_service" {
  description = "Name of the green service (target_options.green_service)."
  value       = aws_ecs_service.colour["green"].name
}

output "listener_rule_arn" {
  description = "The weighted rule releases move (target_options.listener_rule_arn)."
  value       = aws_lb_listener_rule.weighted.arn
}

output "target_group_arns" {
  description = "Target group of each colour."
  value       = { for colour, tg in aws_lb_target_group.colour : colour => tg.arn }
}

output "load_balancer_dns_name" {
  description = "DNS name of the load balancer."
  value       = aws_lb.this.dns_name
}

output "release_policy_arn" {
  description = "IAM policy the promotion DAGs need on this gateway (attach to the Airflow execution role)."
  value       = aws_iam_policy.release.arn
}

output "task_security_group_id" {
  description = "Security group of the gateway tasks."
  value       = aws_security_group.tasks.id
}
