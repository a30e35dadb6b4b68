# A customer-managed KMS key with rotation, its alias, and its key policy: the one place
# that writes a key policy. The account administers the key and delegates its use to IAM
# (the policies of the calling module decide which roles may encrypt or decrypt); when
# log_group_arns is given, CloudWatch Logs may also use the key, for those log groups only.

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_region" "current" {}

locals {
  account_root = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"
}

# In a key policy the resource "*" is the key itself.
data "aws_iam_policy_document" "key" {
  #checkov:skip=CKV_AWS_109:A key policy: its resource "*" is this key alone, and only this account (administration, delegation to IAM) is granted.
  #checkov:skip=CKV_AWS_111:A key policy: its resource "*" is this key alone, and only this account is granted write access to it.
  #checkov:skip=CKV_AWS_356:A key policy names no other resource: "*" is the key the policy is attached to.
  statement {
    sid = "AccountAdministersAndDelegatesToIam"
    actions = [
      "kms:CancelKeyDeletion",
      "kms:CreateAlias",
      "kms:CreateGrant",
      "kms:Decrypt",
      "kms:DeleteAlias",
      "kms:DescribeKey",
      "kms:EnableKeyRotation",
      "kms:Encrypt",
      "kms:GenerateDataKey",
      "kms:GetKeyPolicy",
      "kms:GetKeyRotationStatus",
      "kms:ListGrants",
      "kms:ListResourceTags",
      "kms:PutKeyPolicy",
      "kms:RetireGrant",
      "kms:RevokeGrant",
      "kms:ScheduleKeyDeletion",
      "kms:TagResource",
      "kms:UntagResource",
      "kms:UpdateAlias",
      "kms:UpdateKeyDescription",
    ]
    resources = ["*"]

    principals {
      type        = "AWS"
      identifiers = [local.account_root]
    }
  }

  # CloudWatch Logs names the log group in the encryption context of every KMS call.
  dynamic "statement" {
    for_each = length(var.log_group_arns) > 0 ? [var.log_group_arns] : []

    content {
      sid = "CloudWatchLogsEncryptsTheseLogGroups"
      actions = [
        "kms:Decrypt",
        "kms:DescribeKey",
        "kms:Encrypt",
        "kms:GenerateDataKey",
        "kms:ReEncryptFrom",
        "kms:ReEncryptTo",
      ]
      resources = ["*"]

      principals {
        type        = "Service"
        identifiers = ["logs.${data.aws_region.current.name}.amazonaws.com"]
      }

      condition {
        test     = "ArnEquals"
        variable = "kms:EncryptionContext:aws:logs:arn"
        values   = statement.value
      }
    }
  }
}

resource "aws_kms_key" "this" {
  description             = var.description
  enable_key_rotation     = true
  deletion_window_in_days = var.deletion_window_days
  policy                  = data.aws_iam_policy_document.key.json
  tags                    = var.tags
}

resource "aws_kms_alias" "this" {
  name          = var.alias_name
  target_key_id = aws_kms_key.this.key_id
}
