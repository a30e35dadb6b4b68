output "function_name" {
  description = "Name of the Lambda function (serverless_package's function_name Param)."
  value       = aws_lambda_function.this.function_name
}

output "function_arn" {
  description = "ARN of the Lambda function."
  value       = aws_lambda_function.this.arn
}

output "alias_name" {
  description = "Alias callers invoke (serverless_package's alias Param, promote_canary's target_options.alias)."
  value       = aws_lambda_alias.this.name
}

output "alias_arn" {
  description = "ARN of the alias."
  value       = aws_lambda_alias.this.arn
}

output "role_arn" {
  description = "Execution role of the function (serverless_package's role_arn Param)."
  value       = aws_iam_role.function.arn
}

output "log_group_name" {
  description = "Log group of the function."
  value       = aws_cloudwatch_log_group.function.name
}

output "kms_key_arn" {
  description = "KMS key of the function's logs and environment."
  value       = module.key.arn
}

output "errors_alarm_name" {
  description = "Alarm on the alias's errors."
  value       = aws_cloudwatch_metric_alarm.errors.alarm_name
}

output "duration_alarm_name" {
  description = "Alarm on the alias's p99 duration."
  value       = aws_cloudwatch_metric_alarm.duration.alarm_name
}

output "api_endpoint" {
  description = "URL of the HTTP API's POST /invocations route (requests signed with SigV4 unless JWT is configured)."
  value       = "${aws_apigatewayv2_stage.default.invoke_url}invocations"
}
