# Development: the same stack, smaller and disposable (no deletion
# protection, single-AZ database, fewer tasks). State in S3, then:
#   terraform init -backend-config=backend.hcl && terraform apply -var-file=dev.tfvars

terraform {
  required_version = ">= 1.6"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.0, < 7.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.6"
    }
  }
  backend "s3" {
    key          = "analyzer/dev/terraform.tfstate"
    encrypt      = true
    use_lockfile = true
  }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = { ManagedBy = "terraform", Repository = var.repository }
  }
}

module "stack" {
  source              = "../../modules/stack"
  environment         = "dev"
  domain_name         = var.domain_name
  route53_zone_id     = var.route53_zone_id
  repository          = var.repository
  branch              = "main"
  min_tasks           = 1
  max_tasks           = 2
  on_demand_base      = 0
  nat_gateways        = 1
  db_instance_class   = "db.t4g.micro"
  db_multi_az         = false
  redis_node_type     = "cache.t4g.micro"
  enable_openai       = var.enable_openai
  otel_endpoint       = var.otel_endpoint
  alarm_emails        = var.alarm_emails
  deletion_protection = false
}
