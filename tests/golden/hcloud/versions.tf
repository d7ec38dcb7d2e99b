# Rendered by atl-pipeline from domains.yml. Edit terraform_templates/hcloud/, not this file.

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

# The API tokens come from the environment (TF_VAR_hcloud_token, TF_VAR_cloudflare_api_token),
# which the pipeline sets from the references in domains.yml; they never reach a file.
variable "hcloud_token" {
  type      = string
  sensitive = true
}

variable "cloudflare_api_token" {
  type      = string
  sensitive = true
}

provider "hcloud" {
  token = var.hcloud_token
}

provider "cloudflare" {
  api_token = var.cloudflare_api_token
}
