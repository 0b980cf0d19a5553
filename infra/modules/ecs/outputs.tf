output "cluster_name" {
  description = "The ECS cluster."
  value       = aws_ecs_cluster.main.name
}

output "service_name" {
  description = "The ECS service."
  value       = aws_ecs_service.service.name
}

output "security_group_id" {
  description = "The tasks' security group (allowed into the backends)."
  value       = aws_security_group.service.id
}

output "log_group_name" {
  description = "The service's log group."
  value       = aws_cloudwatch_log_group.service.name
}

output "task_role_arn" {
  description = "The task's role."
  value       = aws_iam_role.task.arn
}

output "execution_role_arn" {
  description = "The execution role."
  value       = aws_iam_role.execution.arn
}

output "task_definition_family" {
  description = "The task definition family."
  value       = aws_ecs_task_definition.service.family
}
