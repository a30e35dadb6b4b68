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

variable "vpc_cidr_block" {
  description = "Address range of the platform's VPC."
  type        = string
  default     = "10.40.0.0/16"
}

variable "zone_suffixes" {
  description = "Availability zones of aws_region the subnets go in, by suffix (two at least: MWAA needs two)."
  type        = list(string)
  default     = ["a", "b"]

  validation {
    condition     = length(var.zone_suffixes) >= 2 && length(var.zone_suffixes) <= 4
    error_message = "zone_suffixes must name 2 to 4 zones."
  }
}

variable "single_nat_gateway" {
  description = "One NAT gateway for all private subnets (cheaper dev stacks)."
  type        = bool
  default     = true
}

variable "gateway_image_tag" {
  description = "Tag of the gateway image in the <name_prefix>-gateway repository."
  type        = string
  default     = "latest"
}

variable "gateway_model_name" {
  description = "Registered model the gateway on ECS serves."
  type        = string
  default     = "flightdeck-classifier"
}

variable "gateway_model_version" {
  description = "Model version of the gateway's first task definition; releases take it further."
  type        = string
  default     = "1"
}

variable "gateway_environment" {
  description = "Further environment of the gateway container, e.g. FLIGHTDECK_MLFLOW_TRACKING_URI."
  type        = map(string)
  default     = {}
}

variable "gateway_certificate_arn" {
  description = "ACM certificate of the gateway load balancer's HTTPS listener."
  type        = string
}

variable "gateway_access_logs_bucket" {
  description = "Bucket (SSE-S3, ELB log delivery allowed) for the gateway load balancer's access logs."
  type        = string
}

variable "gateway_min_tasks" {
  description = "Fewest tasks of the gateway's live colour."
  type        = number
  default     = 2
}

variable "gateway_max_tasks" {
  description = "Most tasks of either gateway colour."
  type        = number
  default     = 6
}

variable "mwaa_airflow_version" {
  description = "Airflow version of the MWAA environment."
  type        = string
  default     = "3.0.6"
}

variable "mwaa_environment_class" {
  description = "MWAA environment class."
  type        = string
  default     = "mw1.small"
}

variable "mwaa_plugins_object_version" {
  description = "S3 object version of plugins.zip in the MWAA bucket (null: none yet)."
  type        = string
  default     = null
}

variable "mwaa_requirements_object_version" {
  description = "S3 object version of requirements.txt in the MWAA bucket (null: none yet)."
  type        = string
  default     = null
}

variable "github_repository" {
  description = "GitHub repository (owner/name) whose workflows assume the ci and cd roles."
  type        = string
}

variable "deploy_branches" {
  description = "Branches whose workflows may assume the cd role."
  type        = list(string)
  default     = ["main"]
}

variable "state_bucket_arn" {
  description = "Bucket of the remote Terraform state the ci/cd roles read (null while state is local)."
  type        = string
  default     = null
}
