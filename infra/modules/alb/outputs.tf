output "security_group_id" {
  description = "The ALB's security group (allowed into the tasks)."
  value       = aws_security_group.alb.id
}

output "target_group_arn" {
  description = "The service's target group."
  value       = aws_lb_target_group.service.arn
}

output "arn_suffix" {
  description = "For CloudWatch metrics."
  value       = aws_lb.main.arn_suffix
}

output "target_group_arn_suffix" {
  description = "For CloudWatch metrics."
  value       = aws_lb_target_group.service.arn_suffix
}

output "https_listener_arn" {
  description = "The HTTPS listener."
  value       = aws_lb_listener.https.arn
}

output "logs_bucket" {
  description = "The log bucket (S3 server access logs go to its s3-access/ prefix)."
  value       = aws_s3_bucket.logs.id
}

output "url" {
  description = "The API's base URL."
  value       = "https://${var.domain_name}"
}
