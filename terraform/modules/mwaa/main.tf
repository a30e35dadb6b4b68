# The managed Airflow environment (Amazon MWAA) that runs flightdeck's DAGs, its source
# bucket and a least-privilege execution role.
#
# Source bucket layout, as MWAA reads it:
#   dags/               the repository's dags/ folder (and the flightdeck package, see README)
#   plugins.zip         the repository's plugins/ folder, zipped
#   requirements.txt    the pinned requirements the workers install
# The environment takes plugins.zip and requirements.txt at the object versions given in the
# variables, so uploading a new file changes nothing until its version is applied.

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name

  environment_arn = "arn:${local.partition}:airflow:${local.region}:${local.account_id}:environment/${var.name}"
  log_kinds       = ["DAGProcessing", "Scheduler", "Task", "WebServer", "Worker"]
  log_group_arns = [
    for kind in local.log_kinds :
    "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:airflow-${var.name}-${kind}"
  ]
  log_streams = [for arn in local.log_group_arns : "${arn}:*"]
}

module "key" {
  source = "../kms_key"

  description          = "Encrypts the MWAA environment ${var.name}: its bucket, queue, database and logs"
  alias_name           = "alias/${var.name}-mwaa"
  deletion_window_days = var.kms_key_deletion_window_days
  log_group_arns       = local.log_group_arns
  tags                 = var.tags
}

# --- source bucket --------------------------------------------------------------------------

resource "aws_s3_bucket" "source" {
  #checkov:skip=CKV_AWS_18:Server access logs need a second bucket that would itself need logging; CloudTrail S3 data events cover who changed the DAGs where an audit trail is required.
  #checkov:skip=CKV_AWS_144:The bucket holds copies of files kept in git (DAGs, plugins, requirements); replication adds cost without protecting anything that cannot be uploaded again.
  #checkov:skip=CKV2_AWS_62:MWAA polls the dags prefix itself; no other consumer of object events exists.
  bucket        = var.bucket_name
  force_destroy = var.force_destroy
  tags          = var.tags
}

resource "aws_s3_bucket_ownership_controls" "source" {
  bucket = aws_s3_bucket.source.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "source" {
  bucket = aws_s3_bucket.source.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# MWAA requires versioning: plugins.zip and requirements.txt are applied by object version.
resource "aws_s3_bucket_versioning" "source" {
  bucket = aws_s3_bucket.source.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "source" {
  bucket = aws_s3_bucket.source.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = module.key.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "source" {
  bucket = aws_s3_bucket.source.id

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.source]
}

data "aws_iam_policy_document" "bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.source.arn,
      "${aws_s3_bucket.source.arn}/*",
    ]

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

resource "aws_s3_bucket_policy" "source" {
  bucket     = aws_s3_bucket.source.id
  policy     = data.aws_iam_policy_document.bucket.json
  depends_on = [aws_s3_bucket_public_access_block.source]
}

# --- execution role -------------------------------------------------------------------------

data "aws_iam_policy_document" "assume" {
  statement {
    sid     = "MwaaAssumesRoleForThisAccount"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["airflow.amazonaws.com", "airflow-env.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "PublishEnvironmentMetrics"
    actions   = ["airflow:PublishMetrics"]
    resources = [local.environment_arn]
  }

  statement {
    sid       = "ReadSourceObjects"
    actions   = ["s3:GetObject", "s3:GetObjectVersion"]
    resources = ["${aws_s3_bucket.source.arn}/dags/*", "${aws_s3_bucket.source.arn}/plugins.zip", "${aws_s3_bucket.source.arn}/requirements.txt"]
  }

  statement {
    sid       = "ListSourcePrefixes"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.source.arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["dags", "dags/*", "plugins.zip", "requirements.txt"]
    }
  }

  statement {
    sid = "ReadSourceBucketSettings"
    actions = [
      "s3:GetBucketLocation", "s3:GetBucketVersioning", "s3:GetEncryptionConfiguration",
      "s3:GetBucketPublicAccessBlock",
    ]
    resources = [aws_s3_bucket.source.arn]
  }

  statement {
    sid       = "CheckAccountPublicAccessBlock"
    actions   = ["s3:GetAccountPublicAccessBlock"]
    resources = ["*"] # an account-level setting: no resource to name
  }

  statement {
    sid = "WriteOwnLogs"
    actions = [
      "logs:CreateLogStream", "logs:CreateLogGroup", "logs:PutLogEvents", "logs:GetLogEvents",
      "logs:GetLogRecord", "logs:GetLogGroupFields", "logs:GetQueryResults",
    ]
    resources = concat(local.log_group_arns, local.log_streams)
  }

  statement {
    sid       = "ListLogGroups"
    actions   = ["logs:DescribeLogGroups"]
    resources = ["*"] # the call lists groups and has no resource-level permissions
  }

  statement {
    sid       = "PutMwaaMetrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"] # the action has no resource-level permissions; the namespace is pinned below

    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = ["AmazonMWAA"]
    }
  }

  statement {
    sid = "UseCeleryQueue"
    actions = [
      "sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl",
      "sqs:ReceiveMessage", "sqs:SendMessage",
    ]
    # The queue lives in an account MWAA owns, so its account is not ours.
    resources = ["arn:${local.partition}:sqs:${local.region}:*:airflow-celery-*"]
  }

  statement {
    sid       = "UseEnvironmentKeyThroughSqsAndS3"
    actions   = ["kms:Decrypt", "kms:DescribeKey", "kms:GenerateDataKey", "kms:Encrypt"]
    resources = [module.key.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["sqs.${local.region}.amazonaws.com", "s3.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "execution" {
  name               = "${var.name}-mwaa"
  description        = "Execution role of MWAA environment ${var.name}: its bucket, logs, queue and key, plus the policies given."
  assume_role_policy = data.aws_iam_policy_document.assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "execution" {
  name   = "${var.name}-mwaa"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# What the DAGs themselves need (the artifact bucket, the gateway's release permissions).
resource "aws_iam_role_policy_attachment" "extra" {
  for_each = var.extra_policy_arns

  role       = aws_iam_role.execution.name
  policy_arn = each.value
}

# --- network and environment ----------------------------------------------------------------

resource "aws_security_group" "this" {
  name        = "${var.name}-mwaa"
  description = "MWAA environment ${var.name}: its own components talk to each other; HTTPS out."
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "self" {
  #checkov:skip=CKV_AWS_24:The source is this security group itself, not 0.0.0.0/0; MWAA requires its components to reach each other on any port.
  #checkov:skip=CKV_AWS_25:The source is this security group itself, not 0.0.0.0/0; MWAA requires its components to reach each other on any port.
  #checkov:skip=CKV_AWS_260:The source is this security group itself, not 0.0.0.0/0; MWAA requires its components to reach each other on any port.
  security_group_id            = aws_security_group.this.id
  description                  = "MWAA components (scheduler, workers, web server, database) to each other"
  referenced_security_group_id = aws_security_group.this.id
  ip_protocol                  = "tcp"
  from_port                    = 0
  to_port                      = 65535
}

resource "aws_vpc_security_group_egress_rule" "self" {
  security_group_id            = aws_security_group.this.id
  description                  = "MWAA components to each other"
  referenced_security_group_id = aws_security_group.this.id
  ip_protocol                  = "tcp"
  from_port                    = 0
  to_port                      = 65535
}

resource "aws_vpc_security_group_egress_rule" "https" {
  security_group_id = aws_security_group.this.id
  description       = "HTTPS out: AWS APIs, the gateway's load balancer, MLflow, package index"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_mwaa_environment" "this" {
  name                           = var.name
  airflow_version                = var.airflow_version
  environment_class              = var.environment_class
  min_workers                    = var.min_workers
  max_workers                    = var.max_workers
  execution_role_arn             = aws_iam_role.execution.arn
  kms_key                        = module.key.arn
  source_bucket_arn              = aws_s3_bucket.source.arn
  dag_s3_path                    = "dags/"
  plugins_s3_path                = var.plugins_s3_object_version == null ? null : "plugins.zip"
  plugins_s3_object_version      = var.plugins_s3_object_version
  requirements_s3_path           = var.requirements_s3_object_version == null ? null : "requirements.txt"
  requirements_s3_object_version = var.requirements_s3_object_version
  webserver_access_mode          = "PRIVATE_ONLY"
  airflow_configuration_options  = var.airflow_configuration_options

  network_configuration {
    security_group_ids = [aws_security_group.this.id]
    subnet_ids         = slice(var.private_subnet_ids, 0, 2)
  }

  logging_configuration {
    dag_processing_logs {
      enabled   = true
      log_level = var.log_level
    }

    scheduler_logs {
      enabled   = true
      log_level = var.log_level
    }

    task_logs {
      enabled   = true
      log_level = var.log_level
    }

    webserver_logs {
      enabled   = true
      log_level = var.log_level
    }

    worker_logs {
      enabled   = true
      log_level = var.log_level
    }
  }

  tags = var.tags

  depends_on = [aws_iam_role_policy.execution, aws_s3_bucket_versioning.source]
}
