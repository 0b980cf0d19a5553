output "api_url" {
  description = "The API."
  value       = module.stack.api_url
}

output "ecr_repository_url" {
  description = "Push images here."
  value       = module.stack.ecr_repository_url
}

output "ssm_path" {
  description = "The parameters' path."
  value       = module.stack.ssm_path
}

output "cluster_name" {
  description = "The ECS cluster."
  value       = module.stack.cluster_name
}

output "service_name" {
  description = "The ECS service."
  value       = module.stack.service_name
}

output "pipeline_connection_arn" {
  description = "Confirm once in the console."
  value       = module.stack.pipeline_connection_arn
}
