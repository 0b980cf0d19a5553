output "vpc_id" {
  description = "The VPC."
  value       = aws_vpc.main.id
}

output "vpc_cidr" {
  description = "The VPC's address range."
  value       = aws_vpc.main.cidr_block
}

output "public_subnet_ids" {
  description = "ALB and NAT subnets."
  value       = aws_subnet.public[*].id
}

output "private_subnet_ids" {
  description = "ECS task and Qdrant subnets."
  value       = aws_subnet.private[*].id
}

output "database_subnet_ids" {
  description = "RDS and ElastiCache subnets."
  value       = aws_subnet.database[*].id
}
