output "parameter_names" {
  description = "Every parameter the service reads."
  value = concat(
    [for p in aws_ssm_parameter.managed : p.name],
    aws_ssm_parameter.openai_api_key[*].name,
  )
}
