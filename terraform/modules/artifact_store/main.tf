# One bucket for MLflow artifacts, raw data and model bundles, encrypted with a key of its
# own, plus two least-privilege IAM policies: read-write for training and the registry,
# read-only on the models prefix for serving.

data "aws_region" "current" {}

locals {
  read_write_prefixes = distinct([var.mlflow_prefix, var.raw_data_prefix, var.models_prefix])
  # Both "prefix" and "prefix/*": clients list with and without the trailing slash.
  read_write_list_prefixes = flatten([for p in local.read_write_prefixes : [p, "${p}/*"]])
  # The key may only be used through S3 in this region, not directly.
  kms_via_s3 = "s3.${data.aws_region.current.name}.amazonaws.com"
}

# The bucket's key (the account administers it and lets IAM grant its use: the read-write and
# read-only policies below are what let a role encrypt or decrypt, and only through S3).
module "key" {
  source = "../kms_key"

  description          = "Encrypts the objects of s3://${var.bucket_name}"
  alias_name           = "alias/${var.bucket_name}"
  deletion_window_days = var.kms_key_deletion_window_days
  tags                 = var.tags
}

moved {
  from = aws_kms_key.artifacts
  to   = module.key.aws_kms_key.this
}

moved {
  from = aws_kms_alias.artifacts
  to   = module.key.aws_kms_alias.this
}

resource "aws_s3_bucket" "artifacts" {
  #checkov:skip=CKV_AWS_18:Server access logs need a second bucket that would itself need logging; use CloudTrail S3 data events on this bucket where an audit trail is required.
  #checkov:skip=CKV_AWS_144:Artifacts are reproducible (MLflow runs, generated raw data) and versioned; cross-region replication doubles storage for a dev environment. Add it per environment if needed.
  #checkov:skip=CKV2_AWS_62:Nothing consumes object events: training, the registry and serving read by key, and deployments are started by the Airflow DAGs.
  bucket        = var.bucket_name
  force_destroy = var.force_destroy
  tags          = var.tags
}

resource "aws_s3_bucket_ownership_controls" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = module.key.arn
    }
    # S3 Bucket Keys cut KMS request costs for buckets with many small objects.
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  rule {
    id     = "expire-noncurrent-versions"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_expiration_days
    }

    expiration {
      expired_object_delete_marker = true
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  # Lifecycle rules on versions need versioning to be configured first.
  depends_on = [aws_s3_bucket_versioning.artifacts]
}

data "aws_iam_policy_document" "bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.artifacts.arn,
      "${aws_s3_bucket.artifacts.arn}/*",
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

resource "aws_s3_bucket_policy" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id
  policy = data.aws_iam_policy_document.bucket.json

  # Applying a bucket policy while the public access block is being created can fail.
  depends_on = [aws_s3_bucket_public_access_block.artifacts]
}

data "aws_iam_policy_document" "read_write" {
  statement {
    sid       = "ListArtifactPrefixes"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.artifacts.arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = local.read_write_list_prefixes
    }
  }

  statement {
    sid       = "ReadWriteArtifactObjects"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = [for p in local.read_write_prefixes : "${aws_s3_bucket.artifacts.arn}/${p}/*"]
  }

  statement {
    sid       = "UseArtifactKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [module.key.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.kms_via_s3]
    }
  }
}

data "aws_iam_policy_document" "read_only" {
  statement {
    sid       = "ListModels"
    actions   = ["s3:ListBucket"]
    resources = [aws_s3_bucket.artifacts.arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = [var.models_prefix, "${var.models_prefix}/*"]
    }
  }

  statement {
    sid       = "ReadModels"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.artifacts.arn}/${var.models_prefix}/*"]
  }

  statement {
    sid       = "DecryptModels"
    actions   = ["kms:Decrypt"]
    resources = [module.key.arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.kms_via_s3]
    }
  }
}

resource "aws_iam_policy" "read_write" {
  name        = "${var.bucket_name}-read-write"
  description = "Read-write access to the MLflow, raw data and model prefixes of s3://${var.bucket_name} (training, registry)."
  policy      = data.aws_iam_policy_document.read_write.json
  tags        = var.tags
}

resource "aws_iam_policy" "read_only" {
  name        = "${var.bucket_name}-read-only"
  description = "Read-only access to the models prefix of s3://${var.bucket_name} (serving)."
  policy      = data.aws_iam_policy_document.read_only.json
  tags        = var.tags
}
