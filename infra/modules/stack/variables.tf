variable "environment" {
  description = "dev or prod."
  type        = string
}

variable "domain_name" {
  description = "The API's host name."
  type        = string
}

variable "route53_zone_id" {
  description = "Hosted zone of domain_name."
  type        = string
}

variable "repository" {
  description = "GitHub owner/name the pipeline builds."
  type        = string
}

variable "branch" {
  description = "The branch that deploys."
  type        = string
  default     = "main"
}

variable "image_tag" {
  description = "The image of the first deployment (later ones come from the pipeline)."
  type        = string
  default     = "latest"
}

variable "min_tasks" {
  description = "Fewest tasks."
  type        = number
  default     = 3
}

variable "max_tasks" {
  description = "Most tasks."
  type        = number
  default     = 6
}

variable "on_demand_base" {
  description = "Tasks always on on-demand Fargate."
  type        = number
  default     = 2
}

variable "nat_gateways" {
  description = "1 or 2."
  type        = number
  default     = 1
}

variable "db_instance_class" {
  description = "RDS size."
  type        = string
  default     = "db.t4g.medium"
}

variable "db_multi_az" {
  description = "RDS standby."
  type        = bool
  default     = true
}

variable "redis_node_type" {
  description = "ElastiCache node size."
  type        = string
  default     = "cache.t4g.small"
}

variable "enable_openai" {
  description = "Create the OPENAI_API_KEY parameter for the operator to set."
  type        = bool
  default     = false
}

variable "otel_endpoint" {
  description = "OTLP/HTTP collector endpoint (empty: none)."
  type        = string
  default     = ""
}

variable "alarm_emails" {
  description = "Alarm subscribers."
  type        = list(string)
  default     = []
}

variable "deletion_protection" {
  description = "Protect data stores and the ALB from deletion."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Extra tags."
  type        = map(string)
  default     = {}
}
