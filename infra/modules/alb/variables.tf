variable "name" {
  description = "Name prefix (32 characters at most for the ALB)."
  type        = string
}

variable "vpc_id" {
  description = "The VPC."
  type        = string
}

variable "vpc_cidr" {
  description = "The VPC's range (the ALB's egress to the tasks)."
  type        = string
}

variable "public_subnet_ids" {
  description = "Subnets of the ALB."
  type        = list(string)
}

variable "domain_name" {
  description = "The API's host name, e.g. api.example.com."
  type        = string
}

variable "route53_zone_id" {
  description = "The hosted zone of domain_name (certificate validation and the alias record)."
  type        = string
}

variable "container_port" {
  description = "The service's port (ANALYZER_BIND)."
  type        = number
  default     = 8000
}

variable "health_check_path" {
  description = "The service's liveness path."
  type        = string
  default     = "/health"
}

variable "deregistration_delay_seconds" {
  description = "Connection draining; at most the service's drain time (ANALYZER_SHUTDOWN_TIMEOUT_SECONDS)."
  type        = number
  default     = 20
}

variable "waf_requests_per_5_minutes_per_ip" {
  description = "WAF block threshold per client IP."
  type        = number
  default     = 20000
}

variable "deletion_protection" {
  description = "Protect the ALB (and keep its log bucket) from deletion."
  type        = bool
  default     = true
}

variable "kms_key_arn" {
  description = "Key for the WAF log group."
  type        = string
}

variable "log_retention_days" {
  description = "Access and WAF log retention."
  type        = number
  default     = 365
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
