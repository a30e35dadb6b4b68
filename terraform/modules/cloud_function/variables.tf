variable "project" {
  description = "Google Cloud project that holds the function."
  type        = string
}

variable "region" {
  description = "Region of the function (a Cloud Run region, e.g. europe-west1)."
  type        = string
}

variable "name" {
  description = "Name of the function (its Cloud Run service). Also names its service accounts."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,23}$", var.name))
    error_message = "name must be 1-24 lowercase letters, digits or hyphens, starting with a letter (room is left for the service accounts' suffixes)."
  }
}

variable "source_bucket" {
  description = "Bucket that holds the source packages flightdeck builds (gcf-<model>-<version>.zip)."
  type        = string
}

variable "source_object" {
  description = "Object name of the package to build this revision from, inside source_bucket."
  type        = string
}

variable "base_image" {
  description = "Runtime the source is built on (the Python 3.11 runtime on Ubuntu 22)."
  type        = string
  default     = "python311"
}

variable "model_name" {
  description = "Registered model the package holds; set as the revision label flightdeck-model, which the cloud_run rollout target matches."
  type        = string
}

variable "model_version" {
  description = "Model version the package holds; set as the revision label flightdeck-version."
  type        = string

  validation {
    condition     = can(regex("^[0-9]+$", var.model_version))
    error_message = "model_version must be a registered version number."
  }
}

variable "revision_suffix" {
  description = "Suffix of this revision's name (<name>-<suffix>); change it with the package so that each model version is its own revision."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9-]{1,20}$", var.revision_suffix))
    error_message = "revision_suffix must be 1-20 lowercase letters, digits or hyphens."
  }
}

variable "memory" {
  description = "Memory of an instance (the handler peaks under 128 MiB; 512Mi is the smallest size with a whole vCPU share)."
  type        = string
  default     = "512Mi"
}

variable "max_instances" {
  description = "Upper bound on instances (caps cost under a traffic spike)."
  type        = number
  default     = 10

  validation {
    condition     = var.max_instances >= 1 && var.max_instances <= 1000
    error_message = "max_instances must be between 1 and 1000."
  }
}

variable "invokers" {
  description = "IAM members allowed to call the function (e.g. serviceAccount:caller@project.iam.gserviceaccount.com); never allUsers."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for m in var.invokers : !contains(["allUsers", "allAuthenticatedUsers"], m)])
    error_message = "invokers must name principals; the function is not public."
  }
}

variable "traffic" {
  description = "The traffic split: revision names (<name>-<suffix>) and whole percents summing to 100, with an optional tag. Empty: all traffic on the latest ready revision. After a release by the promotion DAG (target cloud_run), set it to where the release left the service."
  type = list(object({
    revision = string
    percent  = number
    tag      = optional(string)
  }))
  default = []

  validation {
    condition     = length(var.traffic) == 0 || sum(concat([0], [for t in var.traffic : t.percent])) == 100
    error_message = "traffic percents must sum to 100."
  }

  validation {
    condition     = alltrue([for t in var.traffic : t.percent >= 0 && t.percent <= 100 && floor(t.percent) == t.percent])
    error_message = "traffic percents must be whole numbers from 0 to 100."
  }
}

variable "labels" {
  description = "Labels for the service and its service accounts' descriptions (owner, cost centre)."
  type        = map(string)
  default     = {}
}
