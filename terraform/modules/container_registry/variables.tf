variable "repository_names" {
  description = "One ECR repository is created per name."
  type        = list(string)
  default     = ["flightdeck-airflow", "flightdeck-mlflow", "flightdeck-gateway"]

  validation {
    condition = alltrue([
      for name in var.repository_names :
      can(regex("^[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*$", name)) && length(name) <= 256
    ])
    error_message = "Each repository name must be lowercase letters and digits, separated by '.', '_', '-' or '/'."
  }
}

variable "encryption_type" {
  description = "AES256 or KMS. Fixed when a repository is created: changing it replaces the repositories."
  type        = string
  default     = "KMS"

  validation {
    condition     = contains(["AES256", "KMS"], var.encryption_type)
    error_message = "encryption_type must be \"AES256\" or \"KMS\"."
  }
}

variable "kms_key_arn" {
  description = "KMS key for encryption_type = \"KMS\"; null uses the AWS managed key aws/ecr."
  type        = string
  default     = null
}

variable "max_image_count" {
  description = "How many of the most recently pushed images each repository keeps; older ones expire."
  type        = number
  default     = 30

  validation {
    condition     = var.max_image_count >= 1 && floor(var.max_image_count) == var.max_image_count
    error_message = "max_image_count must be a whole number of at least 1."
  }
}

variable "untagged_image_expiry_days" {
  description = "Days after which untagged images (e.g. layers of failed builds) expire."
  type        = number
  default     = 7

  validation {
    condition     = var.untagged_image_expiry_days >= 1 && floor(var.untagged_image_expiry_days) == var.untagged_image_expiry_days
    error_message = "untagged_image_expiry_days must be a whole number of at least 1."
  }
}

variable "force_delete" {
  description = "Allow terraform destroy to delete repositories that still hold images. Keep false outside throw-away environments."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Extra tags for every repository (on top of the provider's default_tags)."
  type        = map(string)
  default     = {}
}
