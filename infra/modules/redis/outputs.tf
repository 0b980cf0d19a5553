output "redis_url" {
  description = "REDIS_URL for the service: TLS with the AUTH token (a secret: stored in Parameter Store)."
  value       = "rediss://:${random_password.auth.result}@${aws_elasticache_replication_group.main.primary_endpoint_address}:6379"
  sensitive   = true
}

output "replication_group_id" {
  description = "For CloudWatch metrics."
  value       = aws_elasticache_replication_group.main.id
}
