variable "name" {
  description = "Name prefix."
  type        = string
}

variable "vpc_id" {
  description = "The VPC."
  type        = string
}

variable "database_subnet_ids" {
  description = "Subnets of the nodes."
  type        = list(string)
}

variable "service_security_group_id" {
  description = "The analyzer tasks' security group."
  type        = string
}

variable "kms_key_arn" {
  description = "Encryption at rest."
  type        = string
}

variable "node_type" {
  description = "Node size."
  type        = string
  default     = "cache.t4g.small"
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
