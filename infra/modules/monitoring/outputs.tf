output "alarm_topic_arn" {
  description = "Where alarms go."
  value       = aws_sns_topic.alarms.arn
}
