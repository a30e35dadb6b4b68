variable "name" {
  description = "Name of the function app (globally unique: <name>.azurewebsites.net). Also names its plan."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,50}[a-z0-9]$", var.name))
    error_message = "name must be 2-52 lowercase letters, digits or hyphens, not starting or ending with a hyphen."
  }
}

variable "resource_group_name" {
  description = "Resource group of the app and its plan: resource_group of an azure_slots rollout."
  type        = string
}

variable "location" {
  description = "Azure region, e.g. westeurope."
  type        = string
}

variable "sku_name" {
  description = "Plan size. Deployment slots need Elastic Premium (EP1-EP3) or a Dedicated plan; Linux Consumption has none."
  type        = string
  default     = "EP1"

  validation {
    condition     = can(regex("^(EP[1-3]|P[0-3]v[23]|S[1-3])$", var.sku_name))
    error_message = "sku_name must be a plan with deployment slots: EP1-EP3, P0v3-P3v3, P1v2-P3v2 or S1-S3."
  }
}

variable "maximum_elastic_worker_count" {
  description = "Upper bound on instances of the Elastic Premium plan (caps cost under a traffic spike)."
  type        = number
  default     = 10
}

variable "storage_account_name" {
  description = "Storage account the Functions host keeps its state in (AzureWebJobsStorage), reached with the app's managed identity, never a key."
  type        = string
}

variable "storage_account_id" {
  description = "Resource id of that storage account: the app's and the slot's identities get Storage Blob Data Owner on it alone."
  type        = string
}

variable "model_name" {
  description = "Registered model the production package holds (app setting FLIGHTDECK_MODEL_NAME)."
  type        = string
}

variable "model_version" {
  description = "Model version production serves at creation (app setting FLIGHTDECK_MODEL_VERSION; releases change it with the package, which Terraform then ignores)."
  type        = string

  validation {
    condition     = can(regex("^[0-9]+$", var.model_version))
    error_message = "model_version must be a registered version number."
  }
}

variable "slot_name" {
  description = "The deployment slot candidates go to (slot of an azure_slots rollout)."
  type        = string
  default     = "staging"
}

variable "allowed_ip_ranges" {
  description = "CIDR ranges allowed to call the app (its public endpoint is closed otherwise)."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags for every resource (owner, cost centre)."
  type        = map(string)
  default     = {}
}
