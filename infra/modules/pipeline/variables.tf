variable "name" {
  description = "Name prefix."
  type        = string
}

variable "repository" {
  description = "GitHub owner/name of this repository."
  type        = string
}

variable "branch" {
  description = "The branch that deploys."
  type        = string
  default     = "main"
}

variable "ecr_repository_url" {
  description = "Where images are pushed."
  type        = string
}

variable "ecr_repository_arn" {
  description = "For the push permission."
  type        = string
}

variable "ecs_cluster_name" {
  description = "Deploy target cluster."
  type        = string
}

variable "ecs_service_name" {
  description = "Deploy target service."
  type        = string
}

variable "container_name" {
  description = "The container in the task definition whose image is replaced."
  type        = string
  default     = "analyzer"
}

variable "task_role_arns" {
  description = "The task and execution roles (the deploy registers task definitions with them)."
  type        = list(string)
}

variable "kms_key_arn" {
  description = "Artifacts and build key."
  type        = string
}

variable "log_retention_days" {
  description = "Build log retention."
  type        = number
  default     = 365
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
