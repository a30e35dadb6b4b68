variable "name" {
  description = "Name of the VPC, prefix of its subnets, gateways and flow-log resources."
  type        = string
}

variable "cidr_block" {
  description = "The VPC's address range; each subnet takes a /(prefix + 4) of it."
  type        = string
  default     = "10.40.0.0/16"

  validation {
    condition     = can(cidrhost(var.cidr_block, 0)) && tonumber(split("/", var.cidr_block)[1]) <= 20
    error_message = "cidr_block must be an IPv4 range of /20 or larger."
  }
}

variable "availability_zones" {
  description = "Availability zones to spread the subnets over (the first zone_count are used)."
  type        = list(string)
}

variable "zone_count" {
  description = "How many zones get a public and a private subnet (MWAA needs two private subnets)."
  type        = number
  default     = 2

  validation {
    condition     = var.zone_count >= 2 && var.zone_count <= 4
    error_message = "zone_count must be between 2 and 4."
  }
}

variable "single_nat_gateway" {
  description = "One NAT gateway for every private subnet (cheaper; the zone it is in is a single point of failure)."
  type        = bool
  default     = false
}

variable "log_retention_days" {
  description = "Days the flow logs are kept."
  type        = number
  default     = 365
}

variable "kms_key_deletion_window_days" {
  description = "Waiting period, in days, before the flow-log key is deleted after a destroy."
  type        = number
  default     = 30
}

variable "tags" {
  description = "Extra tags for every resource (on top of the provider's default_tags)."
  type        = map(string)
  default     = {}
}
