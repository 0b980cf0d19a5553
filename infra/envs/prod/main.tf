# Production: the design's sizing. State in S3 (create the bucket and the
# lock table once, see docs/deploy.md), then:
#   terraform init && terraform apply -var-file=prod.tfvars

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
    key          = "analyzer/prod/terraform.tfstate"
    encrypt      = true
    use_lockfile = true
    # bucket and region: terraform init -backend-config=backend.hcl
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
  environment         = "prod"
  domain_name         = var.domain_name
  route53_zone_id     = var.route53_zone_id
  repository          = var.repository
  branch              = "main"
  min_tasks           = 3
  max_tasks           = 6
  on_demand_base      = 2
  nat_gateways        = 1
  db_instance_class   = "db.t4g.medium"
  db_multi_az         = true
  redis_node_type     = "cache.t4g.small"
  enable_openai       = var.enable_openai
  otel_endpoint       = var.otel_endpoint
  alarm_emails        = var.alarm_emails
  deletion_protection = true
}
