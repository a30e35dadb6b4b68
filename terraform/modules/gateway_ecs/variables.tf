variable "name" {
  description = "Name of the cluster, load balancer, services (<name>-blue, <name>-green) and roles."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,22}[a-z0-9]$", var.name))
    error_message = "name must be 3-24 lowercase letters, digits and hyphens (target group names add -green)."
  }
}

variable "image" {
  description = "The gateway image (docker/gateway), e.g. <repository_url>:<tag>."
  type        = string
}

variable "repository_arn" {
  description = "ARN of the ECR repository the image comes from (the execution role may pull only from it)."
  type        = string
}

variable "model_name" {
  description = "Registered model the gateway serves."
  type        = string
}

variable "model_version" {
  description = "Model version of the first task definition; later versions come from releases."
  type        = string

  validation {
    condition     = can(regex("^[0-9]+$", var.model_version))
    error_message = "model_version must be a registered version number."
  }
}

variable "environment" {
  description = "Further environment variables of the gateway container (e.g. FLIGHTDECK_MLFLOW_TRACKING_URI)."
  type        = map(string)
  default     = {}
}

variable "artifact_bucket_arn" {
  description = "ARN of the artifact bucket."
  type        = string
}

variable "artifact_kms_key_arn" {
  description = "ARN of the artifact bucket's KMS key."
  type        = string
}

variable "model_artifacts_prefix" {
  description = "Prefix of the artifact bucket under which MLflow keeps model artifacts; the task role reads only there."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the load balancer and the tasks."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets of the tasks (and of the load balancer when internal)."
  type        = list(string)
}

variable "public_subnet_ids" {
  description = "Public subnets of the load balancer when it is not internal."
  type        = list(string)
  default     = []
}

variable "internal" {
  description = "An internal load balancer, reached only from inside the VPC (Airflow, peered networks)."
  type        = bool
  default     = true
}

variable "allowed_cidr_blocks" {
  description = "Address ranges that may reach the load balancer."
  type        = list(string)
}

variable "certificate_arn" {
  description = "ACM certificate of the HTTPS listener."
  type        = string
}

variable "access_logs_bucket" {
  description = "S3 bucket (SSE-S3, with the ELB log-delivery policy) the load balancer writes access logs to."
  type        = string
}

variable "container_port" {
  description = "HTTP port of the gateway container."
  type        = number
  default     = 8000
}

variable "health_check_path" {
  description = "Readiness route the target groups and the container health check call."
  type        = string
  default     = "/v2/health/ready"
}

variable "cpu" {
  description = "Fargate task CPU units."
  type        = number
  default     = 1024
}

variable "memory" {
  description = "Fargate task memory (MiB)."
  type        = number
  default     = 2048
}

variable "min_tasks" {
  description = "Fewest tasks of the live colour."
  type        = number
  default     = 2
}

variable "max_tasks" {
  description = "Most tasks of either colour."
  type        = number
  default     = 10

  validation {
    condition     = var.max_tasks >= 1
    error_message = "max_tasks must be at least 1."
  }
}

variable "requests_per_target" {
  description = "Target of the ALBRequestCountPerTarget policy (requests per task per minute)."
  type        = number
  default     = 3000
}

variable "cpu_target_percent" {
  description = "Target of the average CPU utilisation policy (percent)."
  type        = number
  default     = 60
}

variable "log_retention_days" {
  description = "Days the gateway's logs are kept."
  type        = number
  default     = 365
}

variable "kms_key_deletion_window_days" {
  description = "Waiting period, in days, before the log key is deleted after a destroy."
  type        = number
  default     = 30
}

variable "tags" {
  description = "Extra tags for every resource (on top of the provider's default_tags)."
  type        = map(string)
  default     = {}
}
