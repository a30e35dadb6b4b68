# A model served by AWS Lambda: the function (the serverless_package zip from the artifact
# bucket, or an ECR image), the alias callers invoke and canaries shift, a least-privilege
# execution role, an encrypted log group, the alarms the rollback watches, and an HTTP API
# in front of the alias.
#
# Terraform creates these once; releases then belong to the serverless_package and
# promote_canary DAGs (new code, published versions, alias weights). The function's code
# and the alias's version and routing are therefore ignored after creation, so an apply
# never undoes a rollout.

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name

  function_log_group = "/aws/lambda/${var.function_name}"
  api_log_group      = "/aws/apigateway/${var.function_name}"
  # CloudWatch Logs names the log group in the encryption context of every KMS call.
  log_group_arns = [
    for name in [local.function_log_group, local.api_log_group] :
    "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${name}"
  ]

  handler = "flightdeck.serverless.handler.handler"
  runtime = "python3.11"
  # The alarms and the CloudWatch metric source read the alias through this dimension.
  alias_resource = "${var.function_name}:${var.alias_name}"
  environment = merge(
    { FLIGHTDECK_MAX_BATCH_ROWS = tostring(var.max_batch_rows) },
    var.model_s3_key == null ? {} : {
      FLIGHTDECK_MODEL_S3_URI = "s3://${var.artifact_bucket_name}/${var.package_prefix}/${var.model_s3_key}"
    },
  )
  routes = ["POST /invocations", "POST /v2/models/{model}/infer"]
}

# --- encryption of the logs and the environment --------------------------------------------

module "key" {
  source = "../kms_key"

  description          = "Encrypts the logs and environment of Lambda function ${var.function_name}"
  alias_name           = "alias/${var.function_name}-lambda"
  deletion_window_days = var.kms_key_deletion_window_days
  log_group_arns       = local.log_group_arns
  tags                 = var.tags
}

moved {
  from = aws_kms_key.this
  to   = module.key.aws_kms_key.this
}

moved {
  from = aws_kms_alias.this
  to   = module.key.aws_kms_alias.this
}

resource "aws_cloudwatch_log_group" "function" {
  # The name Lambda writes to: created here first so retention and encryption apply from
  # the first invocation, and so the role need not be allowed to create log groups.
  name              = local.function_log_group
  retention_in_days = var.log_retention_days
  kms_key_id        = module.key.arn
  tags              = var.tags
}

resource "aws_cloudwatch_log_group" "api" {
  name              = local.api_log_group
  retention_in_days = var.log_retention_days
  kms_key_id        = module.key.arn
  tags              = var.tags
}

# --- execution role ------------------------------------------------------------------------

data "aws_iam_policy_document" "assume" {
  statement {
    sid     = "LambdaAssumesRoleForThisAccount"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

data "aws_iam_policy_document" "function" {
  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.function.arn}:log-stream:*"]
  }

  statement {
    sid       = "ReadOwnPackageAndModel"
    actions   = ["s3:GetObject"]
    resources = ["${var.artifact_bucket_arn}/${var.package_prefix}/*"]
  }

  statement {
    sid       = "DecryptArtifactsThroughS3"
    actions   = ["kms:Decrypt"]
    resources = [var.artifact_kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.amazonaws.com"]
    }
  }

  statement {
    sid       = "DecryptOwnEnvironment"
    actions   = ["kms:Decrypt"]
    resources = [module.key.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["lambda.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "function" {
  name               = "${var.function_name}-lambda"
  description        = "Execution role of Lambda function ${var.function_name}: its own logs and package prefix only."
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "function" {
  name   = "${var.function_name}-lambda"
  role   = aws_iam_role.function.id
  policy = data.aws_iam_policy_document.function.json
}

# --- function and alias --------------------------------------------------------------------

resource "aws_lambda_function" "this" {
  #checkov:skip=CKV_AWS_116:Callers invoke synchronously (HTTP API, SDK); a dead-letter queue only receives failed asynchronous events, and errors already raise the errors alarm.
  #checkov:skip=CKV_AWS_117:The function reaches only S3 and CloudWatch; a VPC would need NAT or endpoints and lengthen cold starts without isolating anything.
  #checkov:skip=CKV_AWS_272:Packages are deployed by the serverless_package DAG, which verifies each zip in a fresh process and publishes it by its SHA-256; code signing is left to a later change.
  function_name                  = var.function_name
  description                    = "flightdeck model scoring behind alias ${var.alias_name}"
  role                           = aws_iam_role.function.arn
  package_type                   = var.package_type
  s3_bucket                      = var.package_type == "Zip" ? var.artifact_bucket_name : null
  s3_key                         = var.package_type == "Zip" ? "${var.package_prefix}/${var.package_s3_key}" : null
  image_uri                      = var.package_type == "Image" ? var.image_uri : null
  handler                        = var.package_type == "Zip" ? local.handler : null
  runtime                        = var.package_type == "Zip" ? local.runtime : null
  architectures                  = ["x86_64"]
  memory_size                    = var.memory_mb
  timeout                        = var.timeout_seconds
  reserved_concurrent_executions = var.reserved_concurrency
  kms_key_arn                    = module.key.arn
  # Version 1 is published at creation so the alias has a version to point at.
  publish = true

  environment {
    variables = local.environment
  }

  # No X-Ray daemon permissions are granted (they cannot be scoped to a resource); traces
  # started upstream are passed through.
  tracing_config {
    mode = "PassThrough"
  }

  lifecycle {
    ignore_changes = [s3_key, s3_object_version, image_uri]

    precondition {
      condition     = var.package_type == "Zip" ? var.package_s3_key != null : var.image_uri != null
      error_message = "package_type Zip needs package_s3_key (the zip under package_prefix); Image needs image_uri."
    }
  }

  depends_on = [aws_iam_role_policy.function, aws_cloudwatch_log_group.function]
}

resource "aws_lambda_alias" "this" {
  name             = var.alias_name
  description      = "What callers invoke; canaries weight it between two versions."
  function_name    = aws_lambda_function.this.function_name
  function_version = aws_lambda_function.this.version

  lifecycle {
    ignore_changes = [function_version, routing_config]
  }
}

# --- alarms (names as flightdeck.serverless.deploy.alarm_names) ----------------------------

resource "aws_cloudwatch_metric_alarm" "errors" {
  alarm_name          = "${var.function_name}-${var.alias_name}-errors"
  alarm_description   = "flightdeck: ${local.alias_resource} raised errors"
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 1
  threshold           = var.max_errors_per_minute
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  actions_enabled     = true
  alarm_actions       = var.alarm_actions
  tags                = var.tags

  dimensions = {
    FunctionName = var.function_name
    Resource     = local.alias_resource
  }
}

resource "aws_cloudwatch_metric_alarm" "duration" {
  alarm_name          = "${var.function_name}-${var.alias_name}-p99-duration"
  alarm_description   = "flightdeck: ${local.alias_resource} p99 duration"
  namespace           = "AWS/Lambda"
  metric_name         = "Duration"
  extended_statistic  = "p99"
  period              = 60
  evaluation_periods  = 3
  threshold           = var.max_p99_ms
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  actions_enabled     = true
  alarm_actions       = var.alarm_actions
  tags                = var.tags

  dimensions = {
    FunctionName = var.function_name
    Resource     = local.alias_resource
  }
}

# --- HTTP API ------------------------------------------------------------------------------

resource "aws_apigatewayv2_api" "this" {
  name          = var.function_name
  description   = "flightdeck scoring through Lambda alias ${local.alias_resource}"
  protocol_type = "HTTP"
  tags          = var.tags
}

resource "aws_apigatewayv2_authorizer" "jwt" {
  count = var.api_authorization_type == "JWT" ? 1 : 0

  api_id           = aws_apigatewayv2_api.this.id
  name             = "${var.function_name}-jwt"
  authorizer_type  = "JWT"
  identity_sources = ["$request.header.Authorization"]

  jwt_configuration {
    issuer   = var.jwt_issuer
    audience = var.jwt_audience
  }
}

resource "aws_apigatewayv2_integration" "function" {
  api_id                 = aws_apigatewayv2_api.this.id
  integration_type       = "AWS_PROXY"
  integration_uri        = aws_lambda_alias.this.invoke_arn
  payload_format_version = "2.0"
  timeout_milliseconds   = min(30000, (var.timeout_seconds + 1) * 1000)
}

resource "aws_apigatewayv2_route" "this" {
  for_each = toset(local.routes)

  api_id             = aws_apigatewayv2_api.this.id
  route_key          = each.value
  target             = "integrations/${aws_apigatewayv2_integration.function.id}"
  authorization_type = var.api_authorization_type
  authorizer_id      = var.api_authorization_type == "JWT" ? aws_apigatewayv2_authorizer.jwt[0].id : null
}

resource "aws_apigatewayv2_stage" "default" {
  api_id      = aws_apigatewayv2_api.this.id
  name        = "$default"
  auto_deploy = true
  tags        = var.tags

  default_route_settings {
    throttling_rate_limit    = var.api_throttling_rate_limit
    throttling_burst_limit   = var.api_throttling_burst_limit
    detailed_metrics_enabled = true
  }

  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.api.arn
    format = jsonencode({
      requestId          = "$context.requestId"
      sourceIp           = "$context.identity.sourceIp"
      requestTime        = "$context.requestTime"
      routeKey           = "$context.routeKey"
      status             = "$context.status"
      responseLength     = "$context.responseLength"
      integrationStatus  = "$context.integrationStatus"
      integrationLatency = "$context.integrationLatency"
      errorMessage       = "$context.error.message"
    })
  }
}

resource "aws_lambda_permission" "api" {
  statement_id  = "AllowHttpApiInvokeAlias"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.this.function_name
  qualifier     = aws_lambda_alias.this.name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.this.execution_arn}/*/*"
}
