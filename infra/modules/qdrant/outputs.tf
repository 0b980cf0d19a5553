output "qdrant_url" {
  description = "QDRANT_URL for the service (gRPC)."
  value       = "http://${aws_instance.qdrant.private_ip}:6334"
}

output "instance_id" {
  description = "For CloudWatch alarms and Session Manager."
  value       = aws_instance.qdrant.id
}

output "snapshot_bucket" {
  description = "Where snapshots go."
  value       = aws_s3_bucket.snapshots.id
}
