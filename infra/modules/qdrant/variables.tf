variable "name" {
  description = "Name prefix."
  type        = string
}

variable "vpc_id" {
  description = "The VPC."
  type        = string
}

variable "private_subnet_id" {
  description = "The node's subnet."
  type        = string
}

variable "service_security_group_id" {
  description = "The analyzer tasks' security group."
  type        = string
}

variable "ssm_path" {
  description = "The service's Parameter Store path (QDRANT_API_KEY is read from it)."
  type        = string
}

variable "kms_key_arn" {
  description = "Volumes and snapshot bucket key."
  type        = string
}

variable "instance_type" {
  description = "Instance size."
  type        = string
  default     = "t3.medium"
}

variable "storage_gb" {
  description = "The data volume."
  type        = number
  default     = 100
}

variable "qdrant_version" {
  description = "Qdrant release to install."
  type        = string
  default     = "1.15.0"
}

variable "snapshot_schedule" {
  description = "When snapshots are taken (State Manager cron, UTC)."
  type        = string
  default     = "cron(0 3 * * ? *)"
}

variable "snapshot_retention_days" {
  description = "Snapshots older than this are deleted."
  type        = number
  default     = 90
}

variable "deletion_protection" {
  description = "Keep the snapshot bucket when the stack is destroyed."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}

variable "access_log_bucket" {
  description = "Bucket for S3 server access logs."
  type        = string
}
