terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
  }

  # Local state is fine for a first plan. For shared state, create a versioned, encrypted
  # bucket once (outside this configuration), uncomment, fill in and run `init -migrate-state`:
  #
  # backend "s3" {
  #   bucket       = "<state-bucket-name>"
  #   key          = "flightdeck/dev/terraform.tfstate"
  #   region       = "<region>"
  #   encrypt      = true
  #   use_lockfile = true # Terraform >= 1.10; older versions lock with dynamodb_table
  # }
}
