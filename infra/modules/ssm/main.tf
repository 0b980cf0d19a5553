# The service's configuration in Parameter Store: every parameter under
# `path` is loaded by the task at start (ANALYZER_SSM_PATH) as the
# environment variable of the same name, and re-read periodically (a
# rotated JWT_SECRET is taken into use without a restart). All
# SecureString, under the environment's key.
#
# OPENAI_API_KEY is created (when enabled) with a placeholder that the
# operator replaces (`aws ssm put-parameter --overwrite`); Terraform then
# leaves its value alone.

resource "random_password" "jwt" {
  length  = 64
  special = false
}

resource "random_password" "qdrant" {
  length  = 48
  special = false
}

locals {
  values = {
    JWT_SECRET     = random_password.jwt.result
    DATABASE_URL   = var.database_url
    REDIS_URL      = var.redis_url
    QDRANT_URL     = var.qdrant_url
    QDRANT_API_KEY = random_password.qdrant.result
  }
}

resource "aws_ssm_parameter" "managed" {
  for_each    = nonsensitive(toset(keys(local.values)))
  name        = "${var.path}/${each.key}"
  description = "analyzer: ${each.key}"
  type        = "SecureString"
  key_id      = var.kms_key_arn
  value       = local.values[each.key]
  tags        = var.tags
}

resource "aws_ssm_parameter" "openai_api_key" {
  count       = var.enable_openai ? 1 : 0
  name        = "${var.path}/OPENAI_API_KEY"
  description = "analyzer: OPENAI_API_KEY (set by the operator)"
  type        = "SecureString"
  key_id      = var.kms_key_arn
  value       = "replace-me"
  tags        = var.tags
  lifecycle {
    ignore_changes = [value]
  }
}
