output "database_url" {
  description = "DATABASE_URL for the service (a secret: stored in Parameter Store)."
  value       = "postgres://${var.username}:${random_password.master.result}@${aws_db_instance.main.address}:5432/${var.database}?sslmode=require"
  sensitive   = true
}

output "identifier" {
  description = "For CloudWatch metrics."
  value       = aws_db_instance.main.identifier
}

output "max_connections_alarm_threshold" {
  description = "80% of what the instance class allows, roughly (LEAST(DBInstanceClassMemory/9531392, 5000))."
  value       = var.instance_class == "db.t4g.micro" ? 70 : (var.instance_class == "db.t4g.small" ? 150 : 320)
}
