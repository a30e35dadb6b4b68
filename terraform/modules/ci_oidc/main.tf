# GitHub Actions reaches AWS through OpenID Connect: no stored keys. Two roles, each trusted
# only by this repository's tokens:
#   ci  pull requests and every branch: read what `terraform plan` reads, nothing else;
#   cd  the deploy branches only: the same reads, push to the gateway's ECR repository, and
#       call the Airflow REST API of the MWAA environment (to trigger the promotion DAGs).
# Neither may change infrastructure, read secrets or read data objects.

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name
  issuer     = "token.actions.githubusercontent.com"

  ci_subjects = ["repo:${var.github_repository}:pull_request", "repo:${var.github_repository}:ref:refs/heads/*"]
  cd_subjects = [for branch in var.deploy_branches : "repo:${var.github_repository}:ref:refs/heads/${branch}"]
  airflow_rest_role = format("arn:%s:airflow:%s:%s:role/%s/%s", local.partition, local.region, local.account_id,
  var.mwaa_environment_name, var.airflow_rest_role)
  state_object_arns = var.state_bucket_arn == null ? [] : [
    "${var.state_bucket_arn}/${var.state_key}", "${var.state_bucket_arn}/${var.state_key}.tflock",
  ]
}

resource "aws_iam_openid_connect_provider" "github" {
  url             = "https://${local.issuer}"
  client_id_list  = ["sts.amazonaws.com"]
  thumbprint_list = var.thumbprints
  tags            = var.tags
}

data "aws_iam_policy_document" "ci_assume" {
  statement {
    sid     = "GithubActionsOfThisRepository"
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [aws_iam_openid_connect_provider.github.arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }

    condition {
      test     = "StringLike"
      variable = "${local.issuer}:sub"
      values   = local.ci_subjects
    }
  }
}

data "aws_iam_policy_document" "cd_assume" {
  statement {
    sid     = "GithubActionsOfTheDeployBranches"
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [aws_iam_openid_connect_provider.github.arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.issuer}:aud"
      values   = ["sts.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "${local.issuer}:sub"
      values   = local.cd_subjects
    }
  }
}

# --- terraform plan: read the configuration's resources and the state --------------------------

data "aws_iam_policy" "read_only" {
  name = "ReadOnlyAccess"
}

# ReadOnlyAccess also reads data; these reads are refused, whatever it says.
data "aws_iam_policy_document" "no_data_reads" {
  statement {
    sid           = "NoObjectReadsOutsideTheState"
    effect        = "Deny"
    actions       = ["s3:GetObject", "s3:GetObjectVersion"]
    not_resources = length(local.state_object_arns) > 0 ? local.state_object_arns : ["arn:${local.partition}:s3:::no-state-bucket/none"]
  }

  statement {
    sid    = "NoSecretReads"
    effect = "Deny"
    actions = [
      "secretsmanager:GetSecretValue", "ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath",
      "kms:Decrypt", "dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:Scan",
      "lambda:GetFunction", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
    ]
    resources = ["*"]
  }
}

# Rendered always (empty resources while the state is local), attached only with a state bucket.
data "aws_iam_policy_document" "state" {
  statement {
    sid       = "ListStatePrefix"
    actions   = ["s3:ListBucket"]
    resources = var.state_bucket_arn == null ? [] : [var.state_bucket_arn]

    condition {
      test     = "StringEquals"
      variable = "s3:prefix"
      values   = [var.state_key]
    }
  }

  statement {
    sid       = "ReadStateTakeLock"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = local.state_object_arns
  }
}

# --- cd: push the gateway image, call the Airflow REST API ---------------------------------------

data "aws_iam_policy_document" "cd" {
  statement {
    sid       = "AuthenticateToEcr"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # the action has no resource-level permissions
  }

  statement {
    sid = "PushGatewayImage"
    actions = [
      "ecr:BatchCheckLayerAvailability", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart",
      "ecr:CompleteLayerUpload", "ecr:PutImage", "ecr:DescribeImages",
    ]
    resources = var.push_repository_arns
  }

  statement {
    sid       = "CallAirflowRestApi"
    actions   = ["airflow:InvokeRestApi"]
    resources = [local.airflow_rest_role]
  }
}

# --- roles ------------------------------------------------------------------------------------

resource "aws_iam_role" "ci" {
  name                 = "${var.name}-ci"
  description          = "GitHub Actions of ${var.github_repository} (pull requests, branches): terraform plan reads only."
  assume_role_policy   = data.aws_iam_policy_document.ci_assume.json
  max_session_duration = 3600
  tags                 = var.tags
}

resource "aws_iam_role" "cd" {
  name                 = "${var.name}-cd"
  description          = "GitHub Actions of ${var.github_repository} on its deploy branches: plan reads, gateway image push, Airflow REST API."
  assume_role_policy   = data.aws_iam_policy_document.cd_assume.json
  max_session_duration = 3600
  tags                 = var.tags
}

resource "aws_iam_role_policy_attachment" "read_only" {
  for_each = { ci = aws_iam_role.ci.name, cd = aws_iam_role.cd.name }

  role       = each.value
  policy_arn = data.aws_iam_policy.read_only.arn
}

resource "aws_iam_role_policy" "no_data_reads" {
  for_each = { ci = aws_iam_role.ci.id, cd = aws_iam_role.cd.id }

  name   = "${var.name}-${each.key}-no-data-reads"
  role   = each.value
  policy = data.aws_iam_policy_document.no_data_reads.json
}

resource "aws_iam_role_policy" "state" {
  for_each = var.state_bucket_arn == null ? {} : { ci = aws_iam_role.ci.id, cd = aws_iam_role.cd.id }

  name   = "${var.name}-${each.key}-terraform-state"
  role   = each.value
  policy = data.aws_iam_policy_document.state.json
}

resource "aws_iam_role_policy" "cd" {
  name   = "${var.name}-cd"
  role   = aws_iam_role.cd.id
  policy = data.aws_iam_policy_document.cd.json
}
