# Rendered by atl-pipeline from domains.yml. Edit terraform_templates/hcloud/, not this file.

# The providers read their API tokens from the environment (HCLOUD_TOKEN, CLOUDFLARE_API_TOKEN),
# which the pipeline sets from the references in domains.yml. They are no Terraform variables:
# Terraform writes every variable's value into saved plans, `sensitive` or not.
terraform {
  required_version = ">= 1.5.0"

  required_providers {
    hcloud = {
      source  = "hetznercloud/hcloud"
      version = "~> 1.68"
    }
    cloudflare = {
      source  = "cloudflare/cloudflare"
      version = "~> 5.22"
    }
  }

  backend "local" {
    path = "terraform.tfstate"
  }
}
