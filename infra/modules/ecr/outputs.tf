output "repository_url" {
  description = "Push and pull address."
  value       = aws_ecr_repository.service.repository_url
}

output "repository_arn" {
  description = "For IAM policies."
  value       = aws_ecr_repository.service.arn
}

output "repository_name" {
  description = "The repository's name."
  value       = aws_ecr_repository.service.name
}
