variable "name" {
  description = "Name prefix, e.g. analyzer-prod."
  type        = string
}

variable "vpc_id" {
  description = "The VPC."
  type        = string
}

variable "vpc_cidr" {
  description = "The VPC's range (egress to the backends)."
  type        = string
}

variable "private_subnet_ids" {
  description = "Subnets of the tasks."
  type        = list(string)
}

variable "alb_security_group_id" {
  description = "The load balancer's security group."
  type        = string
}

variable "target_group_arn" {
  description = "The ALB target group of the service."
  type        = string
}

variable "ecr_repository_url" {
  description = "The image repository."
  type        = string
}

variable "ecr_repository_arn" {
  description = "The image repository's ARN (pull permission)."
  type        = string
}

variable "image_tag" {
  description = "The image the first deployment runs; CodePipeline deploys later ones."
  type        = string
  default     = "latest"
}

variable "ssm_path" {
  description = "The Parameter Store path the task reads (ANALYZER_SSM_PATH)."
  type        = string
}

variable "kms_key_arn" {
  description = "Key of the parameters, log group and image."
  type        = string
}

variable "container_port" {
  description = "The service's port."
  type        = number
  default     = 8000
}

variable "cpu" {
  description = "Task CPU units (512 = 0.5 vCPU)."
  type        = number
  default     = 512
}

variable "memory" {
  description = "Task memory, MiB."
  type        = number
  default     = 1024
}

variable "desired_count" {
  description = "Tasks at creation (autoscaling takes over)."
  type        = number
  default     = 3
}

variable "min_count" {
  description = "Fewest tasks."
  type        = number
  default     = 3
}

variable "max_count" {
  description = "Most tasks."
  type        = number
  default     = 6
}

variable "on_demand_base" {
  description = "Tasks always on on-demand Fargate; the rest prefer Spot."
  type        = number
  default     = 2
}

variable "cpu_target_percent" {
  description = "Target tracking on average CPU."
  type        = number
  default     = 60
}

variable "memory_target_percent" {
  description = "Target tracking on average memory."
  type        = number
  default     = 70
}

variable "drain_seconds" {
  description = "ANALYZER_SHUTDOWN_TIMEOUT_SECONDS: how long in-flight requests may finish after SIGTERM."
  type        = number
  default     = 25
}

variable "stop_timeout_seconds" {
  description = "ECS stopTimeout: SIGKILL after this; more than drain_seconds."
  type        = number
  default     = 30
  validation {
    condition     = var.stop_timeout_seconds <= 120
    error_message = "Fargate allows at most 120 seconds."
  }
}

variable "otel_endpoint" {
  description = "OTLP/HTTP endpoint of a collector (empty: no export)."
  type        = string
  default     = ""
}

variable "log_retention_days" {
  description = "Log retention."
  type        = number
  default     = 365
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
