variable "name" {
  description = "Repository name."
  type        = string
}

variable "kms_key_arn" {
  description = "Image encryption key."
  type        = string
}

variable "keep_images" {
  description = "Images kept (rollback targets)."
  type        = number
  default     = 30
}

variable "force_delete" {
  description = "Delete the repository with its images on destroy."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
