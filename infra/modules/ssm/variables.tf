variable "path" {
  description = "Parameter Store path, e.g. /analyzer/prod (ANALYZER_SSM_PATH)."
  type        = string
  validation {
    condition     = can(regex("^/[A-Za-z0-9_./-]+[^/]$", var.path))
    error_message = "path starts with / and does not end with /."
  }
}

variable "database_url" {
  description = "DATABASE_URL."
  type        = string
  sensitive   = true
}

variable "redis_url" {
  description = "REDIS_URL."
  type        = string
  sensitive   = true
}

variable "qdrant_url" {
  description = "QDRANT_URL."
  type        = string
}

variable "enable_openai" {
  description = "Create OPENAI_API_KEY (placeholder value) for the operator to set."
  type        = bool
  default     = false
}

variable "kms_key_arn" {
  description = "The parameters' key."
  type        = string
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
