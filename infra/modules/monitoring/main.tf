# Alarms of the design to one SNS topic, and a dashboard: the API's 5xx
# rate and unhealthy targets (ALB), RDS CPU and connections, Redis memory,
# Qdrant unreachable (the node's status checks, and the service's circuit
# breaker opening: a log metric), and high LLM latency (a log metric of the
# service's per-answer line). The log patterns match the messages in
# `telemetry::messages` (a test checks they agree).

locals {
  namespace = "Analyzer/${var.name}"
}

resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-alarms"
  kms_master_key_id = var.kms_key_arn
  tags              = var.tags
}

resource "aws_sns_topic_subscription" "email" {
  for_each  = toset(var.alarm_emails)
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = each.value
}

resource "aws_cloudwatch_metric_alarm" "http_5xx_rate" {
  alarm_name          = "${var.name}-5xx-rate"
  alarm_description   = "More than ${var.error_rate_percent}% of API requests answered 5xx for 5 minutes."
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.error_rate_percent
  evaluation_periods  = 5
  datapoints_to_alarm = 5
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  metric_query {
    id          = "rate"
    expression  = "100 * (errors + elb) / MAX([requests, 1])"
    label       = "5xx %"
    return_data = true
  }
  metric_query {
    id = "errors"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_Target_5XX_Count"
      dimensions  = { LoadBalancer = var.alb_arn_suffix }
      period      = 60
      stat        = "Sum"
    }
  }
  metric_query {
    id = "elb"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "HTTPCode_ELB_5XX_Count"
      dimensions  = { LoadBalancer = var.alb_arn_suffix }
      period      = 60
      stat        = "Sum"
    }
  }
  metric_query {
    id = "requests"
    metric {
      namespace   = "AWS/ApplicationELB"
      metric_name = "RequestCount"
      dimensions  = { LoadBalancer = var.alb_arn_suffix }
      period      = 60
      stat        = "Sum"
    }
  }
  tags = var.tags
}

resource "aws_cloudwatch_log_metric_filter" "breaker_opened" {
  name           = "${var.name}-vector-breaker-opened"
  log_group_name = var.service_log_group_name
  pattern        = "{ $.fields.message = \"${var.breaker_opened_message}\" }"
  metric_transformation {
    name          = "VectorBreakerOpened"
    namespace     = local.namespace
    value         = "1"
    default_value = "0"
    unit          = "Count"
  }
}

resource "aws_cloudwatch_log_metric_filter" "llm_latency" {
  name           = "${var.name}-llm-latency"
  log_group_name = var.service_log_group_name
  pattern        = "{ $.fields.message = \"${var.llm_answer_message}\" }"
  metric_transformation {
    name      = "LlmAnswerMilliseconds"
    namespace = local.namespace
    value     = "$.fields.duration_ms"
    unit      = "Milliseconds"
  }
}

# The alarms on one metric against a threshold (above it alarms), as a
# table: name suffix, what it means, the metric, how it is summed.
locals {
  threshold_alarms = {
    unhealthy-targets = {
      description = "A task fails the ALB's /health check."
      namespace   = "AWS/ApplicationELB"
      metric      = "UnHealthyHostCount"
      dimensions  = { LoadBalancer = var.alb_arn_suffix, TargetGroup = var.target_group_arn_suffix }
      statistic   = "Maximum"
      percentile  = null
      period      = 60
      periods     = 3
      threshold   = 0
      missing     = "notBreaching"
    }
    rds-cpu = {
      description = "RDS CPU above 80% for 10 minutes."
      namespace   = "AWS/RDS"
      metric      = "CPUUtilization"
      dimensions  = { DBInstanceIdentifier = var.rds_identifier }
      statistic   = "Average"
      percentile  = null
      period      = 300
      periods     = 2
      threshold   = 80
      missing     = "missing"
    }
    rds-connections = {
      description = "RDS connections near the instance's limit."
      namespace   = "AWS/RDS"
      metric      = "DatabaseConnections"
      dimensions  = { DBInstanceIdentifier = var.rds_identifier }
      statistic   = "Maximum"
      percentile  = null
      period      = 300
      periods     = 2
      threshold   = var.rds_connections_threshold
      missing     = "missing"
    }
    redis-memory = {
      description = "Redis memory above 80% (the cache then evicts early)."
      namespace   = "AWS/ElastiCache"
      metric      = "DatabaseMemoryUsagePercentage"
      dimensions  = { ReplicationGroupId = var.redis_replication_group_id }
      statistic   = "Maximum"
      percentile  = null
      period      = 300
      periods     = 2
      threshold   = 80
      missing     = "missing"
    }
    qdrant-node = {
      description = "The Qdrant node fails its EC2 status checks."
      namespace   = "AWS/EC2"
      metric      = "StatusCheckFailed"
      dimensions  = { InstanceId = var.qdrant_instance_id }
      statistic   = "Maximum"
      percentile  = null
      period      = 60
      periods     = 2
      threshold   = 0
      missing     = "missing"
    }
    qdrant-unreachable = {
      description = "A task's circuit breaker opened on Qdrant: searches answer 503 or from the cache."
      namespace   = local.namespace
      metric      = aws_cloudwatch_log_metric_filter.breaker_opened.metric_transformation[0].name
      dimensions  = {}
      statistic   = "Sum"
      percentile  = null
      period      = 60
      periods     = 1
      threshold   = 0
      missing     = "notBreaching"
    }
    llm-latency = {
      description = "p95 of /v1/analyze answers above ${var.llm_p95_ms_threshold} ms for 15 minutes."
      namespace   = local.namespace
      metric      = aws_cloudwatch_log_metric_filter.llm_latency.metric_transformation[0].name
      dimensions  = {}
      statistic   = null
      percentile  = "p95"
      period      = 300
      periods     = 3
      threshold   = var.llm_p95_ms_threshold
      missing     = "notBreaching"
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "threshold" {
  for_each            = local.threshold_alarms
  alarm_name          = "${var.name}-${each.key}"
  alarm_description   = each.value.description
  namespace           = each.value.namespace
  metric_name         = each.value.metric
  dimensions          = each.value.dimensions
  statistic           = each.value.statistic
  extended_statistic  = each.value.percentile
  period              = each.value.period
  evaluation_periods  = each.value.periods
  threshold           = each.value.threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = each.value.missing
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = var.tags
}

resource "aws_cloudwatch_dashboard" "main" {
  dashboard_name = var.name
  dashboard_body = jsonencode({
    widgets = [
      {
        type = "metric", x = 0, y = 0, width = 12, height = 6
        properties = {
          title  = "Requests and 5xx"
          region = var.region
          stat   = "Sum"
          period = 60
          metrics = [
            ["AWS/ApplicationELB", "RequestCount", "LoadBalancer", var.alb_arn_suffix],
            [".", "HTTPCode_Target_5XX_Count", ".", "."],
            [".", "HTTPCode_Target_4XX_Count", ".", "."],
          ]
        }
      },
      {
        type = "metric", x = 12, y = 0, width = 12, height = 6
        properties = {
          title  = "Latency (target response time)"
          region = var.region
          period = 60
          metrics = [
            ["AWS/ApplicationELB", "TargetResponseTime", "LoadBalancer", var.alb_arn_suffix, { stat = "p50" }],
            ["...", { stat = "p95" }],
            ["...", { stat = "p99" }],
          ]
        }
      },
      {
        type = "metric", x = 0, y = 6, width = 12, height = 6
        properties = {
          title  = "Service CPU and memory"
          region = var.region
          stat   = "Average"
          period = 60
          metrics = [
            ["AWS/ECS", "CPUUtilization", "ClusterName", var.ecs_cluster_name, "ServiceName", var.ecs_service_name],
            [".", "MemoryUtilization", ".", ".", ".", "."],
          ]
        }
      },
      {
        type = "metric", x = 12, y = 6, width = 12, height = 6
        properties = {
          title  = "Healthy and unhealthy tasks"
          region = var.region
          stat   = "Maximum"
          period = 60
          metrics = [
            ["AWS/ApplicationELB", "HealthyHostCount", "LoadBalancer", var.alb_arn_suffix, "TargetGroup", var.target_group_arn_suffix],
            [".", "UnHealthyHostCount", ".", ".", ".", "."],
          ]
        }
      },
      {
        type = "metric", x = 0, y = 12, width = 8, height = 6
        properties = {
          title  = "RDS"
          region = var.region
          period = 300
          metrics = [
            ["AWS/RDS", "CPUUtilization", "DBInstanceIdentifier", var.rds_identifier, { stat = "Average" }],
            [".", "DatabaseConnections", ".", ".", { stat = "Maximum", yAxis = "right" }],
          ]
        }
      },
      {
        type = "metric", x = 8, y = 12, width = 8, height = 6
        properties = {
          title  = "Redis memory %"
          region = var.region
          stat   = "Maximum"
          period = 300
          metrics = [
            ["AWS/ElastiCache", "DatabaseMemoryUsagePercentage", "ReplicationGroupId", var.redis_replication_group_id],
          ]
        }
      },
      {
        type = "metric", x = 16, y = 12, width = 8, height = 6
        properties = {
          title  = "LLM answer p95 (ms) and breaker openings"
          region = var.region
          period = 300
          metrics = [
            [local.namespace, "LlmAnswerMilliseconds", { stat = "p95" }],
            [".", "VectorBreakerOpened", { stat = "Sum", yAxis = "right" }],
          ]
        }
      },
    ]
  })
}
