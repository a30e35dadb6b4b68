variable "name" {
  description = "Name of the MWAA environment, its role and security group."
  type        = string
}

variable "bucket_name" {
  description = "Source bucket of the environment (MWAA requires the name to start with airflow-)."
  type        = string

  validation {
    condition     = startswith(var.bucket_name, "airflow-")
    error_message = "bucket_name must start with airflow-."
  }
}

variable "airflow_version" {
  description = "Airflow version of the environment (the DAGs use Airflow 3's Task SDK)."
  type        = string
  default     = "3.0.6"
}

variable "environment_class" {
  description = "MWAA environment class (mw1.micro, mw1.small, ...)."
  type        = string
  default     = "mw1.small"
}

variable "min_workers" {
  description = "Fewest Celery workers."
  type        = number
  default     = 1
}

variable "max_workers" {
  description = "Most Celery workers."
  type        = number
  default     = 4
}

variable "plugins_s3_object_version" {
  description = "Object version of plugins.zip to load; null: no plugins."
  type        = string
  default     = null
}

variable "requirements_s3_object_version" {
  description = "Object version of requirements.txt to install; null: no extra requirements."
  type        = string
  default     = null
}

variable "airflow_configuration_options" {
  description = "Airflow configuration overrides (section.key = value)."
  type        = map(string)
  default     = {}
}

variable "extra_policy_arns" {
  description = "IAM policies the DAGs need, attached to the execution role (name => ARN)."
  type        = map(string)
  default     = {}
}

variable "vpc_id" {
  description = "VPC of the environment."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets in two zones (MWAA takes exactly two; the first two are used)."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2
    error_message = "MWAA needs two private subnets in different zones."
  }
}

variable "log_level" {
  description = "Level of every log MWAA sends to CloudWatch."
  type        = string
  default     = "INFO"
}

variable "noncurrent_version_expiration_days" {
  description = "Days an overwritten DAG, plugins.zip or requirements.txt version is kept."
  type        = number
  default     = 90
}

variable "force_destroy" {
  description = "Let terraform destroy remove a non-empty source bucket (throw-away dev stacks only)."
  type        = bool
  default     = false
}

variable "kms_key_deletion_window_days" {
  description = "Waiting period, in days, before the environment's key is deleted after a destroy."
  type        = number
  default     = 30
}

variable "tags" {
  description = "Extra tags for every resource (on top of the provider's default_tags)."
  type        = map(string)
  default     = {}
}
