# The gateway on ECS Fargate behind an Application Load Balancer, laid out for the `ecs`
# delivery target (flightdeck.delivery.targets.ecs): two services, blue and green, each with
# its own target group, and one listener rule whose forward action splits traffic between
# the two target groups by weight.
#
# Terraform creates the first task definition (the bootstrap model version) and both
# services; releases then belong to the promotion DAGs, which register a task definition
# revision per model version on the idle colour and move the rule's weights. The services'
# task definitions and desired counts and the rule's action are therefore ignored after
# creation, so an apply never undoes a rollout. Deployments use the ECS rolling controller
# (no CodeDeploy) with a circuit breaker that rolls a failed revision back.

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name

  colours       = toset(["blue", "green"])
  log_group     = "/ecs/${var.name}"
  log_group_arn = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${local.log_group}"
  home          = "/opt/flightdeck" # the image's FLIGHTDECK_HOME (docker/gateway/Dockerfile)
  # The bootstrap version's route table: one endpoint pinned to it, variant v<version>, as the
  # ecs target writes it for every later version.
  routes_yaml = yamlencode({
    default_endpoint = "default"
    endpoints = {
      default = {
        policy         = "single"
        allow_override = false
        variants       = { "v${var.model_version}" = { model = var.model_name, version = var.model_version } }
      }
    }
  })
  environment = merge(var.environment, {
    FLIGHTDECK_HOME         = local.home
    FLIGHTDECK_MODEL_NAME   = var.model_name
    FLIGHTDECK_ROUTES_FILE  = "${local.home}/routes.yaml"
    FLIGHTDECK_ROUTES_YAML  = local.routes_yaml
    FLIGHTDECK_GATEWAY_HOST = "0.0.0.0"
    FLIGHTDECK_GATEWAY_PORT = tostring(var.container_port)
  })
}

# --- logs -----------------------------------------------------------------------------------

module "key" {
  source = "../kms_key"

  description          = "Encrypts the logs of the ${var.name} gateway on ECS"
  alias_name           = "alias/${var.name}-ecs"
  deletion_window_days = var.kms_key_deletion_window_days
  log_group_arns       = [local.log_group_arn]
  tags                 = var.tags
}

resource "aws_cloudwatch_log_group" "gateway" {
  name              = local.log_group
  retention_in_days = var.log_retention_days
  kms_key_id        = module.key.arn
  tags              = var.tags
}

# --- roles ----------------------------------------------------------------------------------

data "aws_iam_policy_document" "tasks_assume" {
  statement {
    sid     = "EcsTasksAssumeRoleForThisAccount"
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

# The execution role: what ECS itself needs to start a task (pull the image, write its logs).
data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "AuthenticateToEcr"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # the action has no resource-level permissions
  }

  statement {
    sid       = "PullGatewayImage"
    actions   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
    resources = [var.repository_arn]
  }

  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.gateway.arn}:log-stream:*"]
  }
}

resource "aws_iam_role" "execution" {
  name               = "${var.name}-ecs-execution"
  description        = "Starts the ${var.name} gateway tasks: pulls its image, writes its logs."
  assume_role_policy = data.aws_iam_policy_document.tasks_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "execution" {
  name   = "${var.name}-ecs-execution"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# The task role: what the gateway process may do: read the registered models' artifacts, which
# MLflow clients download straight from the artifact root when the tracking server does not
# proxy them.
data "aws_iam_policy_document" "task" {
  statement {
    sid       = "ReadModelArtifacts"
    actions   = ["s3:GetObject"]
    resources = ["${var.artifact_bucket_arn}/${var.model_artifacts_prefix}/*"]
  }

  statement {
    sid       = "DecryptArtifactsThroughS3"
    actions   = ["kms:Decrypt"]
    resources = [var.artifact_kms_key_arn]

    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "task" {
  name               = "${var.name}-ecs-task"
  description        = "The ${var.name} gateway process: reads model artifacts only."
  assume_role_policy = data.aws_iam_policy_document.tasks_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy" "task" {
  name   = "${var.name}-ecs-task"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}

# --- cluster and task definition ------------------------------------------------------------

resource "aws_ecs_cluster" "this" {
  name = var.name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  tags = var.tags
}

resource "aws_ecs_cluster_capacity_providers" "this" {
  cluster_name       = aws_ecs_cluster.this.name
  capacity_providers = ["FARGATE"]

  default_capacity_provider_strategy {
    capacity_provider = "FARGATE"
    weight            = 1
  }
}

resource "aws_ecs_task_definition" "bootstrap" {
  family                   = var.name
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.cpu
  memory                   = var.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  # The root file system is read-only; the gateway writes its SQLite route store, running sums
  # and prediction log under FLIGHTDECK_HOME, a task-local volume (each task keeps its own).
  volume {
    name = "home"
  }

  volume {
    name = "tmp"
  }

  container_definitions = jsonencode([{
    name                   = "gateway"
    image                  = var.image
    essential              = true
    readonlyRootFilesystem = true
    user                   = "50002:50002"
    entryPoint             = ["sh", "-c"]
    command                = ["printf \"%s\" \"$FLIGHTDECK_ROUTES_YAML\" > \"$FLIGHTDECK_ROUTES_FILE\" && exec flightdeck serve"]
    portMappings           = [{ containerPort = var.container_port, protocol = "tcp" }]
    environment            = [for key in sort(keys(local.environment)) : { name = key, value = local.environment[key] }]
    mountPoints = [
      { sourceVolume = "home", containerPath = local.home, readOnly = false },
      { sourceVolume = "tmp", containerPath = "/tmp", readOnly = false },
    ]
    healthCheck = {
      command     = ["CMD", "python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${var.container_port}${var.health_check_path}', timeout=4)"]
      interval    = 15
      timeout     = 5
      retries     = 3
      startPeriod = 60
    }
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.gateway.name
        awslogs-region        = local.region
        awslogs-stream-prefix = "gateway"
      }
    }
  }])

  # The ecs target recognises a model version by these tags.
  tags = merge(var.tags, {
    "flightdeck:model"         = var.model_name
    "flightdeck:model-version" = var.model_version
  })
}

# --- network --------------------------------------------------------------------------------

resource "aws_security_group" "alb" {
  name        = "${var.name}-alb"
  description = "The ${var.name} gateway's load balancer: HTTPS from the allowed ranges, HTTP to the tasks."
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  for_each = toset(var.allowed_cidr_blocks)

  security_group_id = aws_security_group.alb.id
  description       = "HTTPS from ${each.value}"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_ingress_rule" "alb_http" {
  for_each = toset(var.allowed_cidr_blocks)

  security_group_id = aws_security_group.alb.id
  description       = "HTTP from ${each.value}, only redirected to HTTPS"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
}

resource "aws_vpc_security_group_egress_rule" "alb_to_tasks" {
  security_group_id            = aws_security_group.alb.id
  description                  = "To the gateway tasks"
  referenced_security_group_id = aws_security_group.tasks.id
  ip_protocol                  = "tcp"
  from_port                    = var.container_port
  to_port                      = var.container_port
}

resource "aws_security_group" "tasks" {
  name        = "${var.name}-tasks"
  description = "The ${var.name} gateway tasks: HTTP from the load balancer only, HTTPS out."
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "tasks_from_alb" {
  security_group_id            = aws_security_group.tasks.id
  description                  = "From the load balancer"
  referenced_security_group_id = aws_security_group.alb.id
  ip_protocol                  = "tcp"
  from_port                    = var.container_port
  to_port                      = var.container_port
}

resource "aws_vpc_security_group_egress_rule" "tasks_https" {
  security_group_id = aws_security_group.tasks.id
  description       = "HTTPS out: ECR, S3, CloudWatch Logs and the MLflow server"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

# --- load balancer --------------------------------------------------------------------------

resource "aws_lb" "this" {
  #checkov:skip=CKV2_AWS_28:The load balancer is internal by default, reached only from inside the VPC; a public edge in front of it is where a WAF belongs.
  #checkov:skip=CKV_AWS_150:Deletion protection would block terraform destroy of throw-away dev stacks; set it per environment through the AWS console or a later variable.
  name                       = var.name
  internal                   = var.internal
  load_balancer_type         = "application"
  security_groups            = [aws_security_group.alb.id]
  subnets                    = var.internal ? var.private_subnet_ids : var.public_subnet_ids
  drop_invalid_header_fields = true
  enable_deletion_protection = false

  access_logs {
    bucket  = var.access_logs_bucket
    prefix  = var.name
    enabled = true
  }

  tags = var.tags
}

resource "aws_lb_target_group" "colour" {
  #checkov:skip=CKV_AWS_378:TLS ends at the load balancer; the tasks sit in private subnets and accept traffic only from its security group.
  for_each = local.colours

  name                 = "${var.name}-${each.key}"
  port                 = var.container_port
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = var.vpc_id
  deregistration_delay = 30

  health_check {
    path                = var.health_check_path
    protocol            = "HTTP"
    matcher             = "200"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = merge(var.tags, { colour = each.key })
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn

  # Requests no rule matches: nothing. The weighted rule below carries the gateway's traffic.
  default_action {
    type = "fixed-response"

    fixed_response {
      content_type = "text/plain"
      message_body = "not found"
      status_code  = "404"
    }
  }

  tags = var.tags
}

resource "aws_lb_listener" "http_redirect" {
  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type = "redirect"

    redirect {
      port        = "443"
      protocol    = "HTTPS"
      status_code = "HTTP_301"
    }
  }

  tags = var.tags
}

# The rule whose weights releases move: created with all traffic on blue, then owned by the
# promotion DAGs (`target: ecs`, target_options.listener_rule_arn).
resource "aws_lb_listener_rule" "weighted" {
  listener_arn = aws_lb_listener.https.arn
  priority     = 100

  action {
    type = "forward"

    forward {
      target_group {
        arn    = aws_lb_target_group.colour["blue"].arn
        weight = 100
      }

      target_group {
        arn    = aws_lb_target_group.colour["green"].arn
        weight = 0
      }

      stickiness {
        enabled  = false
        duration = 1
      }
    }
  }

  condition {
    path_pattern {
      values = ["/*"]
    }
  }

  lifecycle {
    ignore_changes = [action]
  }

  tags = var.tags
}

# --- services -------------------------------------------------------------------------------

resource "aws_ecs_service" "colour" {
  for_each = local.colours

  name                               = "${var.name}-${each.key}"
  cluster                            = aws_ecs_cluster.this.id
  task_definition                    = aws_ecs_task_definition.bootstrap.arn
  desired_count                      = each.key == "blue" ? var.min_tasks : 0
  launch_type                        = "FARGATE"
  platform_version                   = "LATEST"
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  health_check_grace_period_seconds  = 60
  enable_ecs_managed_tags            = true
  propagate_tags                     = "TASK_DEFINITION"

  deployment_controller {
    type = "ECS"
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  network_configuration {
    subnets          = var.private_subnet_ids
    security_groups  = [aws_security_group.tasks.id]
    assign_public_ip = false
  }

  load_balancer {
    target_group_arn = aws_lb_target_group.colour[each.key].arn
    container_name   = "gateway"
    container_port   = var.container_port
  }

  lifecycle {
    # Releases register task definitions and size the idle colour; autoscaling sizes both.
    ignore_changes = [task_definition, desired_count]
  }

  depends_on = [aws_lb_listener_rule.weighted]
  tags       = merge(var.tags, { colour = each.key })
}

# --- autoscaling ----------------------------------------------------------------------------

resource "aws_appautoscaling_target" "colour" {
  for_each = local.colours

  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.this.name}/${aws_ecs_service.colour[each.key].name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = each.key == "blue" ? var.min_tasks : 0
  max_capacity       = var.max_tasks
  tags               = var.tags

  lifecycle {
    # The idle colour's floor follows the release (0 between rollouts, min_tasks while live).
    ignore_changes = [min_capacity]
  }
}

resource "aws_appautoscaling_policy" "requests" {
  for_each = local.colours

  name               = "${var.name}-${each.key}-requests-per-target"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.colour[each.key].service_namespace
  resource_id        = aws_appautoscaling_target.colour[each.key].resource_id
  scalable_dimension = aws_appautoscaling_target.colour[each.key].scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.requests_per_target
    scale_in_cooldown  = 300
    scale_out_cooldown = 60

    predefined_metric_specification {
      predefined_metric_type = "ALBRequestCountPerTarget"
      resource_label         = "${aws_lb.this.arn_suffix}/${aws_lb_target_group.colour[each.key].arn_suffix}"
    }
  }
}

resource "aws_appautoscaling_policy" "cpu" {
  for_each = local.colours

  name               = "${var.name}-${each.key}-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.colour[each.key].service_namespace
  resource_id        = aws_appautoscaling_target.colour[each.key].resource_id
  scalable_dimension = aws_appautoscaling_target.colour[each.key].scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value       = var.cpu_target_percent
    scale_in_cooldown  = 300
    scale_out_cooldown = 60

    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}

# --- what a release may do ------------------------------------------------------------------

# The promotion DAGs' permissions on this gateway (attach to the Airflow execution role): read
# the services and the rule, register task definitions, update the two services, move the
# rule's weights, and pass the two roles to new task definition revisions.
data "aws_iam_policy_document" "release" {
  statement {
    sid       = "ReadAndUpdateTheTwoServices"
    actions   = ["ecs:DescribeServices", "ecs:UpdateService"]
    resources = [for s in aws_ecs_service.colour : s.id]
  }

  statement {
    sid       = "RegisterAndReadTaskDefinitions"
    actions   = ["ecs:RegisterTaskDefinition", "ecs:DescribeTaskDefinition"]
    resources = ["*"] # these actions have no resource-level permissions
  }

  statement {
    sid       = "TagOwnTaskDefinitions"
    actions   = ["ecs:TagResource"]
    resources = ["arn:${local.partition}:ecs:${local.region}:${local.account_id}:task-definition/${var.name}:*"]
  }

  statement {
    sid       = "PassTheGatewayRoles"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.execution.arn, aws_iam_role.task.arn]

    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.amazonaws.com"]
    }
  }

  statement {
    sid       = "ReadRules"
    actions   = ["elasticloadbalancing:DescribeRules"]
    resources = ["*"] # Describe* calls have no resource-level permissions
  }

  statement {
    sid       = "MoveTheWeights"
    actions   = ["elasticloadbalancing:ModifyRule"]
    resources = [aws_lb_listener_rule.weighted.arn]
  }
}

resource "aws_iam_policy" "release" {
  name        = "${var.name}-release"
  description = "What the promotion DAGs may do on the ${var.name} gateway: new task definitions on its two services and the weights of its rule."
  policy      = data.aws_iam_policy_document.release.json
  tags        = var.tags
}
