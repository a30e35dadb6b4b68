variable "description" {
  description = "What the key encrypts, shown in the KMS console."
  type        = string
}

variable "alias_name" {
  description = "The key's alias, including the alias/ prefix."
  type        = string

  validation {
    condition     = startswith(var.alias_name, "alias/") && !startswith(var.alias_name, "alias/aws/")
    error_message = "alias_name must start with alias/ (and not alias/aws/, which AWS reserves)."
  }
}

variable "deletion_window_days" {
  description = "Waiting period, in days, before the key is deleted after a destroy."
  type        = number
  default     = 30

  validation {
    condition     = var.deletion_window_days >= 7 && var.deletion_window_days <= 30
    error_message = "deletion_window_days must be between 7 and 30."
  }
}

variable "log_group_arns" {
  description = "CloudWatch Logs log groups (ARNs) that may encrypt with the key; empty: none."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Extra tags for the key (on top of the provider's default_tags)."
  type        = map(string)
  default     = {}
}
