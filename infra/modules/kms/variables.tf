variable "name" {
  description = "Name prefix, e.g. analyzer-prod."
  type        = string
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
