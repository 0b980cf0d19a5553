variable "name" {
  description = "Name prefix."
  type        = string
}

variable "region" {
  description = "Region of the dashboard's metrics."
  type        = string
}

variable "kms_key_arn" {
  description = "The topic's key."
  type        = string
}

variable "alarm_emails" {
  description = "Addresses subscribed to the alarms (each confirms by mail)."
  type        = list(string)
  default     = []
}

variable "alb_arn_suffix" {
  description = "The load balancer."
  type        = string
}

variable "target_group_arn_suffix" {
  description = "The service's target group."
  type        = string
}

variable "ecs_cluster_name" {
  description = "The cluster."
  type        = string
}

variable "ecs_service_name" {
  description = "The service."
  type        = string
}

variable "service_log_group_name" {
  description = "The service's log group (metric filters)."
  type        = string
}

variable "rds_identifier" {
  description = "The database instance."
  type        = string
}

variable "rds_connections_threshold" {
  description = "Alarm above this many connections."
  type        = number
}

variable "redis_replication_group_id" {
  description = "The Redis replication group."
  type        = string
}

variable "qdrant_instance_id" {
  description = "The Qdrant node."
  type        = string
}

variable "error_rate_percent" {
  description = "5xx share that alarms."
  type        = number
  default     = 1
}

variable "llm_p95_ms_threshold" {
  description = "p95 answer time of /v1/analyze that alarms."
  type        = number
  default     = 15000
}

variable "breaker_opened_message" {
  description = "The service's log message when its vector breaker opens."
  type        = string
  default     = "vector store circuit opened"
}

variable "llm_answer_message" {
  description = "The service's log message per answer (with duration_ms)."
  type        = string
  default     = "llm answer"
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
