variable "bucket_name" {
  description = "Name of the artifact bucket (globally unique). Also names the KMS alias and the IAM policies."
  type        = string

  validation {
    # No dots: they break virtual-hosted TLS certificates and are not allowed in KMS alias names.
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be 3-63 characters of lowercase letters, digits and hyphens, starting and ending with a letter or digit."
  }
}

variable "mlflow_prefix" {
  description = "Key prefix (no slashes at either end) for MLflow run artifacts."
  type        = string
  default     = "mlflow"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9_.-]*(/[a-z0-9][a-z0-9_.-]*)*$", var.mlflow_prefix))
    error_message = "mlflow_prefix must be a plain key prefix such as \"mlflow\": no leading or trailing slash, no wildcards."
  }
}

variable "raw_data_prefix" {
  description = "Key prefix (no slashes at either end) for raw data partitions (parquet, ds=YYYY-MM-DD)."
  type        = string
  default     = "raw"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9_.-]*(/[a-z0-9][a-z0-9_.-]*)*$", var.raw_data_prefix))
    error_message = "raw_data_prefix must be a plain key prefix such as \"raw\": no leading or trailing slash, no wildcards."
  }
}

variable "models_prefix" {
  description = "Key prefix (no slashes at either end) for exported model bundles (ONNX, TFLite, Lambda packages); the only prefix serving can read."
  type        = string
  default     = "models"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9_.-]*(/[a-z0-9][a-z0-9_.-]*)*$", var.models_prefix))
    error_message = "models_prefix must be a plain key prefix such as \"models\": no leading or trailing slash, no wildcards."
  }
}

variable "noncurrent_version_expiration_days" {
  description = "Days after which a noncurrent (overwritten or deleted) object version is permanently removed."
  type        = number
  default     = 90

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1 && floor(var.noncurrent_version_expiration_days) == var.noncurrent_version_expiration_days
    error_message = "noncurrent_version_expiration_days must be a whole number of at least 1."
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

variable "force_destroy" {
  description = "Allow terraform destroy to delete the bucket while it still holds objects. Keep false outside throw-away environments."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Extra tags for every resource of the module (on top of the provider's default_tags)."
  type        = map(string)
  default     = {}
}
