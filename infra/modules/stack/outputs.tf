output "api_url" {
  description = "The API."
  value       = module.alb.url
}

output "ecr_repository_url" {
  description = "Push images here."
  value       = module.ecr.repository_url
}

output "ssm_path" {
  description = "ANALYZER_SSM_PATH."
  value       = local.ssm_path
}

output "parameter_names" {
  description = "The parameters the service reads."
  value       = module.ssm.parameter_names
}

output "cluster_name" {
  description = "The ECS cluster."
  value       = module.ecs.cluster_name
}

output "service_name" {
  description = "The ECS service."
  value       = module.ecs.service_name
}

output "pipeline_connection_arn" {
  description = "Confirm once in the console."
  value       = module.pipeline.connection_arn
}

output "qdrant_snapshot_bucket" {
  description = "Qdrant snapshots."
  value       = module.qdrant.snapshot_bucket
}

output "alarm_topic_arn" {
  description = "Alarms."
  value       = module.monitoring.alarm_topic_arn
}
