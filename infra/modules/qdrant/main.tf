# The Qdrant node: one t3.medium in a private subnet, its storage on an
# encrypted 100 GB gp3 volume, ports 6333 (REST) and 6334 (gRPC) open only
# to the service's security group, an API key from Parameter Store, no SSH
# (Session Manager instead). Snapshots go to S3 every night (a State
# Manager association runs the snapshot document on the node) and age out
# by lifecycle rules.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

data "aws_ssm_parameter" "al2023" {
  name = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
}

locals {
  api_key_parameter = "${var.ssm_path}/QDRANT_API_KEY"
  api_key_arn       = "arn:${data.aws_partition.current.partition}:ssm:${data.aws_region.current.region}:${data.aws_caller_identity.current.account_id}:parameter${local.api_key_parameter}"
}

resource "aws_security_group" "qdrant" {
  name        = "${var.name}-qdrant"
  description = "Qdrant REST and gRPC from the analyzer tasks only"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "from_service" {
  for_each                     = toset(["6333", "6334"])
  security_group_id            = aws_security_group.qdrant.id
  description                  = "Qdrant ${each.key == "6333" ? "REST" : "gRPC"} from the service"
  referenced_security_group_id = var.service_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = tonumber(each.key)
  to_port                      = tonumber(each.key)
}

resource "aws_vpc_security_group_egress_rule" "https" {
  security_group_id = aws_security_group.qdrant.id
  description       = "HTTPS: the Qdrant release, S3, Systems Manager"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

# Snapshots.
resource "aws_s3_bucket" "snapshots" {
  #checkov:skip=CKV_AWS_144:Single-region deployment; cross-region replication is a disaster-recovery choice left to the operator (docs/deploy.md).
  #checkov:skip=CKV2_AWS_62:Nothing consumes the bucket's events.
  bucket_prefix = "${var.name}-qdrant-snapshots-"
  force_destroy = !var.deletion_protection
  tags          = var.tags
}

resource "aws_s3_bucket_public_access_block" "snapshots" {
  bucket                  = aws_s3_bucket.snapshots.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "snapshots" {
  bucket = aws_s3_bucket.snapshots.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "snapshots" {
  bucket = aws_s3_bucket.snapshots.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = var.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "snapshots" {
  bucket = aws_s3_bucket.snapshots.id
  rule {
    id     = "age-out"
    status = "Enabled"
    filter {}
    transition {
      days          = 30
      storage_class = "STANDARD_IA"
    }
    expiration {
      days = var.snapshot_retention_days
    }
    noncurrent_version_expiration {
      noncurrent_days = 7
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

data "aws_iam_policy_document" "snapshots_tls" {
  statement {
    sid       = "TlsOnly"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.snapshots.arn, "${aws_s3_bucket.snapshots.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "snapshots" {
  bucket = aws_s3_bucket.snapshots.id
  policy = data.aws_iam_policy_document.snapshots_tls.json
}

# The node's role: Session Manager, its API key, writing snapshots.
data "aws_iam_policy_document" "ec2_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "node" {
  name               = "${var.name}-qdrant"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "ssm_core" {
  role       = aws_iam_role.node.name
  policy_arn = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

data "aws_iam_policy_document" "node" {
  statement {
    sid       = "ReadApiKey"
    actions   = ["ssm:GetParameter"]
    resources = [local.api_key_arn]
  }
  statement {
    sid       = "WriteSnapshots"
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload"]
    resources = ["${aws_s3_bucket.snapshots.arn}/*"]
  }
  statement {
    sid       = "UseKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "node" {
  name   = "qdrant-node"
  role   = aws_iam_role.node.id
  policy = data.aws_iam_policy_document.node.json
}

resource "aws_iam_instance_profile" "node" {
  name = "${var.name}-qdrant"
  role = aws_iam_role.node.name
}

resource "aws_instance" "qdrant" {
  ami                    = data.aws_ssm_parameter.al2023.value
  instance_type          = var.instance_type
  subnet_id              = var.private_subnet_id
  vpc_security_group_ids = [aws_security_group.qdrant.id]
  iam_instance_profile   = aws_iam_instance_profile.node.name
  ebs_optimized          = true
  monitoring             = true
  metadata_options {
    http_tokens                 = "required"
    http_endpoint               = "enabled"
    http_put_response_hop_limit = 1
  }
  root_block_device {
    volume_type = "gp3"
    volume_size = 20
    encrypted   = true
    kms_key_id  = var.kms_key_arn
  }
  user_data = templatefile("${path.module}/user_data.sh.tftpl", {
    qdrant_version    = var.qdrant_version
    api_key_parameter = local.api_key_parameter
    region            = data.aws_region.current.region
  })
  user_data_replace_on_change = false
  tags                        = merge(var.tags, { Name = "${var.name}-qdrant" })
  lifecycle {
    ignore_changes = [ami]
  }
}

resource "aws_ebs_volume" "storage" {
  availability_zone = aws_instance.qdrant.availability_zone
  size              = var.storage_gb
  type              = "gp3"
  encrypted         = true
  kms_key_id        = var.kms_key_arn
  tags              = merge(var.tags, { Name = "${var.name}-qdrant-storage" })
}

resource "aws_volume_attachment" "storage" {
  device_name = "/dev/sdf"
  volume_id   = aws_ebs_volume.storage.id
  instance_id = aws_instance.qdrant.id
}

# Nightly snapshots of every collection to S3.
resource "aws_ssm_document" "snapshot" {
  name            = "${var.name}-qdrant-snapshot"
  document_type   = "Command"
  document_format = "YAML"
  content = templatefile("${path.module}/snapshot.yaml.tftpl", {
    bucket            = aws_s3_bucket.snapshots.id
    api_key_parameter = local.api_key_parameter
    region            = data.aws_region.current.region
  })
  tags = var.tags
}

resource "aws_ssm_association" "snapshot" {
  name                = aws_ssm_document.snapshot.name
  association_name    = "${var.name}-qdrant-nightly-snapshot"
  schedule_expression = var.snapshot_schedule
  targets {
    key    = "InstanceIds"
    values = [aws_instance.qdrant.id]
  }
}

resource "aws_s3_bucket_logging" "snapshots" {
  bucket        = aws_s3_bucket.snapshots.id
  target_bucket = var.access_log_bucket
  target_prefix = "s3-access/snapshots/"
}
