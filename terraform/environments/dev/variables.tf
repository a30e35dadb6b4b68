variable "aws_region" {
  description = "AWS region every resource of this environment is created in."
  type        = string
  default     = "eu-west-1"
}

variable "environment" {
  description = "Environment name, written to the environment tag of every resource."
  type        = string
  default     = "dev"
}

variable "name_prefix" {
  description = "Prefix of every resource name. S3 bucket names are global: pick one nobody else uses."
  type        = string
  default     = "flightdeck-dev"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,38}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-40 characters of lowercase letters, digits and hyphens."
  }
}

variable "tags" {
  description = "Extra default tags; project and environment are always set and cannot be overridden."
  type        = map(string)
  default     = {}
}

variable "images" {
  description = "Images that get an ECR repository named <name_prefix>-<image>."
  type        = list(string)
  default     = ["airflow", "mlflow", "gateway"]
}

variable "noncurrent_version_expiration_days" {
  description = "Days a noncurrent object version is kept in the artifact bucket."
  type        = number
  default     = 30
}

variable "max_image_count" {
  description = "Images kept per ECR repository."
  type        = number
  default     = 20
}

variable "force_destroy" {
  description = "Let terraform destroy remove a non-empty bucket and repositories (throw-away dev stacks only)."
  type        = bool
  default     = false
}

variable "lambda_alias" {
  description = "Alias of the scoring function that callers invoke and canaries shift."
  type        = string
  default     = "live"
}

variable "lambda_package_type" {
  description = "Zip (the serverless_package zip in the artifact bucket) or Image (an ECR image)."
  type        = string
  default     = "Zip"
}

variable "lambda_package_key" {
  description = "File name of the first Lambda zip under <models prefix>/lambda/<name_prefix>-scorer/ (package type Zip)."
  type        = string
  default     = null
}

variable "lambda_image_uri" {
  description = "ECR image of the function (package type Image), e.g. from the <name_prefix>-lambda repository."
  type        = string
  default     = null
}

variable "lambda_memory_mb" {
  description = "Memory of the scoring function in MB."
  type        = number
  default     = 128
}

variable "lambda_reserved_concurrency" {
  description = "Concurrent executions reserved for, and capping, the scoring function."
  type        = number
  default     = 20
}

variable "lambda_max_p99_ms" {
  description = "Threshold of the p99 duration alarm, in milliseconds."
  type        = number
  default     = 1000
}

variable "log_retention_days" {
  description = "Days the function's and the HTTP API's logs are kept."
  type        = number
  default     = 365
}

variable "alarm_actions" {
  description = "SNS topic ARNs the Lambda alarms notify."
  type        = list(string)
  default     = []
}
