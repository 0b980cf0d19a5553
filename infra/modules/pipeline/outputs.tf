output "connection_arn" {
  description = "Confirm this connection once in the console (Developer Tools > Connections)."
  value       = aws_codestarconnections_connection.source.arn
}

output "pipeline_name" {
  description = "The pipeline."
  value       = aws_codepipeline.main.name
}
