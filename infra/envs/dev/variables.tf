variable "region" {
  description = "AWS region."
  type        = string
  default     = "us-east-1"
}

variable "domain_name" {
  description = "The API's host name, e.g. api.example.com."
  type        = string
}

variable "route53_zone_id" {
  description = "The hosted zone of domain_name."
  type        = string
}

variable "repository" {
  description = "GitHub owner/name of this repository (the pipeline's source)."
  type        = string
}

variable "enable_openai" {
  description = "Create OPENAI_API_KEY in Parameter Store (then set its value)."
  type        = bool
  default     = false
}

variable "otel_endpoint" {
  description = "OTLP/HTTP endpoint of a collector (empty: no export)."
  type        = string
  default     = ""
}

variable "alarm_emails" {
  description = "Who gets the alarms."
  type        = list(string)
  default     = []
}
