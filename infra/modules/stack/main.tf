# One environment of the analyzer: every module wired together. The roots
# in infra/envs/<env> call this with their sizes.

data "aws_region" "current" {}

locals {
  name     = "analyzer-${var.environment}"
  ssm_path = "/analyzer/${var.environment}"
  tags = merge(var.tags, {
    Application = "analyzer"
    Environment = var.environment
  })
  # The service's contract, which the infrastructure must agree with
  # (tests/api/infra.rs checks these against the code).
  container_port    = 8000
  health_check_path = "/health"
  drain_seconds     = 25
}

module "kms" {
  source = "../kms"
  name   = local.name
  tags   = local.tags
}

module "network" {
  source       = "../network"
  name         = local.name
  cidr         = "10.0.0.0/16"
  nat_gateways = var.nat_gateways
  kms_key_arn  = module.kms.key_arn
  tags         = local.tags
}

module "ecr" {
  source       = "../ecr"
  name         = local.name
  kms_key_arn  = module.kms.key_arn
  force_delete = !var.deletion_protection
  tags         = local.tags
}

module "alb" {
  source                       = "../alb"
  name                         = local.name
  vpc_id                       = module.network.vpc_id
  vpc_cidr                     = module.network.vpc_cidr
  public_subnet_ids            = module.network.public_subnet_ids
  domain_name                  = var.domain_name
  route53_zone_id              = var.route53_zone_id
  container_port               = local.container_port
  health_check_path            = local.health_check_path
  deregistration_delay_seconds = 20
  deletion_protection          = var.deletion_protection
  kms_key_arn                  = module.kms.key_arn
  tags                         = local.tags
}

module "ecs" {
  source                = "../ecs"
  name                  = local.name
  vpc_id                = module.network.vpc_id
  vpc_cidr              = module.network.vpc_cidr
  private_subnet_ids    = module.network.private_subnet_ids
  alb_security_group_id = module.alb.security_group_id
  target_group_arn      = module.alb.target_group_arn
  ecr_repository_url    = module.ecr.repository_url
  ecr_repository_arn    = module.ecr.repository_arn
  image_tag             = var.image_tag
  ssm_path              = local.ssm_path
  kms_key_arn           = module.kms.key_arn
  container_port        = local.container_port
  cpu                   = 512
  memory                = 1024
  desired_count         = var.min_tasks
  min_count             = var.min_tasks
  max_count             = var.max_tasks
  on_demand_base        = var.on_demand_base
  drain_seconds         = local.drain_seconds
  stop_timeout_seconds  = 30
  otel_endpoint         = var.otel_endpoint
  tags                  = local.tags
}

module "rds" {
  source                    = "../rds"
  name                      = local.name
  vpc_id                    = module.network.vpc_id
  database_subnet_ids       = module.network.database_subnet_ids
  service_security_group_id = module.ecs.security_group_id
  kms_key_arn               = module.kms.key_arn
  instance_class            = var.db_instance_class
  multi_az                  = var.db_multi_az
  deletion_protection       = var.deletion_protection
  tags                      = local.tags
}

module "redis" {
  source                    = "../redis"
  name                      = local.name
  vpc_id                    = module.network.vpc_id
  database_subnet_ids       = module.network.database_subnet_ids
  service_security_group_id = module.ecs.security_group_id
  kms_key_arn               = module.kms.key_arn
  node_type                 = var.redis_node_type
  tags                      = local.tags
}

module "qdrant" {
  source                    = "../qdrant"
  name                      = local.name
  vpc_id                    = module.network.vpc_id
  private_subnet_id         = module.network.private_subnet_ids[0]
  service_security_group_id = module.ecs.security_group_id
  ssm_path                  = local.ssm_path
  kms_key_arn               = module.kms.key_arn
  instance_type             = "t3.medium"
  storage_gb                = 100
  deletion_protection       = var.deletion_protection
  access_log_bucket         = module.alb.logs_bucket
  tags                      = local.tags
}

module "ssm" {
  source        = "../ssm"
  path          = local.ssm_path
  database_url  = module.rds.database_url
  redis_url     = module.redis.redis_url
  qdrant_url    = module.qdrant.qdrant_url
  enable_openai = var.enable_openai
  kms_key_arn   = module.kms.key_arn
  tags          = local.tags
}

module "monitoring" {
  source                     = "../monitoring"
  name                       = local.name
  region                     = data.aws_region.current.region
  kms_key_arn                = module.kms.key_arn
  alarm_emails               = var.alarm_emails
  alb_arn_suffix             = module.alb.arn_suffix
  target_group_arn_suffix    = module.alb.target_group_arn_suffix
  ecs_cluster_name           = module.ecs.cluster_name
  ecs_service_name           = module.ecs.service_name
  service_log_group_name     = module.ecs.log_group_name
  rds_identifier             = module.rds.identifier
  rds_connections_threshold  = module.rds.max_connections_alarm_threshold
  redis_replication_group_id = module.redis.replication_group_id
  qdrant_instance_id         = module.qdrant.instance_id
  tags                       = local.tags
}

module "pipeline" {
  source             = "../pipeline"
  name               = local.name
  repository         = var.repository
  branch             = var.branch
  ecr_repository_url = module.ecr.repository_url
  ecr_repository_arn = module.ecr.repository_arn
  ecs_cluster_name   = module.ecs.cluster_name
  ecs_service_name   = module.ecs.service_name
  task_role_arns     = [module.ecs.task_role_arn, module.ecs.execution_role_arn]
  kms_key_arn        = module.kms.key_arn
  access_log_bucket  = module.alb.logs_bucket
  tags               = local.tags
}
