variable "name" {
  description = "Name prefix."
  type        = string
}

variable "vpc_id" {
  description = "The VPC."
  type        = string
}

variable "database_subnet_ids" {
  description = "The database subnets."
  type        = list(string)
}

variable "service_security_group_id" {
  description = "The analyzer tasks' security group."
  type        = string
}

variable "kms_key_arn" {
  description = "Storage and Performance Insights key."
  type        = string
}

variable "instance_class" {
  description = "Instance size."
  type        = string
  default     = "db.t4g.medium"
}

variable "allocated_storage_gb" {
  description = "Initial storage (autoscaling to 5x)."
  type        = number
  default     = 50
}

variable "multi_az" {
  description = "A standby in the second AZ."
  type        = bool
  default     = true
}

variable "database" {
  description = "Database name."
  type        = string
  default     = "analyzer"
}

variable "username" {
  description = "Master user."
  type        = string
  default     = "analyzer"
}

variable "deletion_protection" {
  description = "Protect from deletion (and take a final snapshot)."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
