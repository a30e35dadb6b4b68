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
