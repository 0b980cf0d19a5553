variable "name" {
  description = "Name prefix, e.g. analyzer-prod."
  type        = string
}

variable "cidr" {
  description = "The VPC's address range."
  type        = string
  default     = "10.0.0.0/16"
}

variable "availability_zones" {
  description = "The two zones (default: the region's a and b)."
  type        = list(string)
  default     = null
  validation {
    condition     = var.availability_zones == null ? true : length(var.availability_zones) == 2
    error_message = "Two availability zones."
  }
}

variable "nat_gateways" {
  description = "NAT gateways: 1 (the design) or 2 (one per AZ)."
  type        = number
  default     = 1
  validation {
    condition     = contains([1, 2], var.nat_gateways)
    error_message = "nat_gateways is 1 or 2."
  }
}

variable "kms_key_arn" {
  description = "Key for the flow log group."
  type        = string
}

variable "log_retention_days" {
  description = "Flow log retention."
  type        = number
  default     = 365
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
