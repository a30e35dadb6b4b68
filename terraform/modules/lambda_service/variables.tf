variable "function_name" {
  description = "Name of the Lambda function. Also names its role, log group, key alias, alarms and HTTP API."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,56}$", var.function_name))
    error_message = "function_name must be 1-56 letters, digits, hyphens or underscores (room is left for the suffixes of the role and alarm names)."
  }
}

variable "alias_name" {
  description = "Alias that callers invoke and that canaries shift (the serverless_package DAG's alias Param)."
  type        = string
  default     = "live"

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9_-]{0,127}$", var.alias_name))
    error_message = "alias_name must start with a letter and hold only letters, digits, hyphens and underscores."
  }
}

variable "package_type" {
  description = "\"Zip\": the package built by serverless_package, read from the artifact bucket. \"Image\": an ECR image built from docker/lambda.Dockerfile."
  type        = string
  default     = "Zip"

  validation {
    condition     = contains(["Zip", "Image"], var.package_type)
    error_message = "package_type must be \"Zip\" or \"Image\"."
  }
}

variable "artifact_bucket_name" {
  description = "Artifact bucket (modules/artifact_store) that holds the zip and, optionally, the model."
  type        = string
}

variable "artifact_bucket_arn" {
  description = "ARN of the artifact bucket; the function may read only package_prefix inside it."
  type        = string
}

variable "artifact_kms_key_arn" {
  description = "KMS key of the artifact bucket; the function may decrypt with it through S3 only."
  type        = string
}

variable "package_prefix" {
  description = "Key prefix (no slashes at either end) of this function's packages and models, inside the bucket's models prefix, e.g. \"models/lambda/flightdeck-scorer\". The function's role reads nothing else."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)*$", var.package_prefix))
    error_message = "package_prefix must be a plain key prefix: no leading or trailing slash, no wildcards."
  }
}

variable "package_s3_key" {
  description = "Key of the first zip (package_type Zip), under package_prefix. Later versions come from the serverless_package DAG; Terraform ignores code changes after creation."
  type        = string
  default     = null
}

variable "image_uri" {
  description = "ECR image URI with a digest or an immutable tag (package_type Image)."
  type        = string
  default     = null
}

variable "model_s3_key" {
  description = "Optional key of a model.onnx under package_prefix that the handler downloads at cold start (FLIGHTDECK_MODEL_S3_URI) instead of the packaged one."
  type        = string
  default     = null
}

variable "memory_mb" {
  description = "Memory of the function in MB (128 is enough for the measured handler; CPU grows with memory)."
  type        = number
  default     = 128

  validation {
    condition     = var.memory_mb >= 128 && var.memory_mb <= 10240
    error_message = "memory_mb must be between 128 and 10240."
  }
}

variable "timeout_seconds" {
  description = "Function timeout in seconds (the HTTP API gives up after 30)."
  type        = number
  default     = 10

  validation {
    condition     = var.timeout_seconds >= 1 && var.timeout_seconds <= 30
    error_message = "timeout_seconds must be between 1 and 30 (API Gateway's integration timeout)."
  }
}

variable "reserved_concurrency" {
  description = "Concurrent executions reserved for (and capping) the function: a runaway caller cannot exhaust the account's pool."
  type        = number
  default     = 20

  validation {
    condition     = var.reserved_concurrency >= 1 && floor(var.reserved_concurrency) == var.reserved_concurrency
    error_message = "reserved_concurrency must be a whole number of at least 1."
  }
}

variable "max_batch_rows" {
  description = "Rows one request may carry (FLIGHTDECK_MAX_BATCH_ROWS, as on the gateway)."
  type        = number
  default     = 1000
}

variable "log_retention_days" {
  description = "Days the function's and the HTTP API's logs are kept."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention CloudWatch Logs offers (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, ...)."
  }
}

variable "kms_key_deletion_window_days" {
  description = "Waiting period, in days, before the module's KMS key is deleted after a destroy."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_key_deletion_window_days >= 7 && var.kms_key_deletion_window_days <= 30
    error_message = "kms_key_deletion_window_days must be between 7 and 30."
  }
}

variable "max_errors_per_minute" {
  description = "The errors alarm fires when the alias raises at least this many errors in a minute."
  type        = number
  default     = 1
}

variable "max_p99_ms" {
  description = "The duration alarm fires when the alias's p99 duration stays above this for 3 minutes."
  type        = number
  default     = 1000
}

variable "alarm_actions" {
  description = "SNS topic ARNs notified when an alarm fires (none: the alarms are only watched by the rollback)."
  type        = list(string)
  default     = []
}

variable "api_authorization_type" {
  description = "Authorization of the HTTP API routes: AWS_IAM (callers sign with SigV4) or JWT (give jwt_issuer and jwt_audience)."
  type        = string
  default     = "AWS_IAM"

  validation {
    condition     = contains(["AWS_IAM", "JWT"], var.api_authorization_type)
    error_message = "api_authorization_type must be AWS_IAM or JWT; an open API is not offered."
  }
}

variable "jwt_issuer" {
  description = "Issuer URL of the JWT authorizer (api_authorization_type JWT)."
  type        = string
  default     = null
}

variable "jwt_audience" {
  description = "Audiences the JWT authorizer accepts (api_authorization_type JWT)."
  type        = list(string)
  default     = []
}

variable "api_throttling_rate_limit" {
  description = "Steady-state requests per second the HTTP API accepts."
  type        = number
  default     = 100
}

variable "api_throttling_burst_limit" {
  description = "Burst of requests the HTTP API accepts."
  type        = number
  default     = 200
}

variable "tags" {
  description = "Extra tags for every resource of the module (on top of the provider's default_tags)."
  type        = map(string)
  default     = {}
}
