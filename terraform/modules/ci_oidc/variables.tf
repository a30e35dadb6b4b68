variable "name" {
  description = "Prefix of the role names (<name>-ci, <name>-cd)."
  type        = string
}

variable "github_repository" {
  description = "The repository whose workflows may assume the roles, as owner/name."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", var.github_repository))
    error_message = "github_repository must be owner/name."
  }
}

variable "deploy_branches" {
  description = "Branches whose workflows may assume the cd role."
  type        = list(string)
  default     = ["main"]
}

variable "thumbprints" {
  description = "Certificate thumbprints of GitHub's OIDC issuer (AWS no longer checks them for this issuer, the API still takes them)."
  type        = list(string)
  default     = ["6938fd4d98bab03faadb97b34396831e3780aea1", "1c58a3a8518e8759bf075b76b750d4f2df264fcd"]
}

variable "push_repository_arns" {
  description = "ECR repositories the cd role may push to (the gateway's)."
  type        = list(string)
}

variable "mwaa_environment_name" {
  description = "MWAA environment whose Airflow REST API the cd role may call."
  type        = string
}

variable "airflow_rest_role" {
  description = "Airflow role the cd role acts as on the REST API (User may trigger DAG runs; not Admin)."
  type        = string
  default     = "User"
}

variable "state_bucket_arn" {
  description = "Bucket of the Terraform state (null: local state, no state permissions)."
  type        = string
  default     = null
}

variable "state_key" {
  description = "Key of the state object in the state bucket."
  type        = string
  default     = "flightdeck/dev/terraform.tfstate"
}

variable "tags" {
  description = "Extra tags for every resource (on top of the provider's default_tags)."
  type        = map(string)
  default     = {}
}
