"""The guide's twenty exercises and their checkers (`flightdeck exercises check N`).

Each checker reads the running system (registry, gateway database, partitions, reports, edge
store, Redis) and the learner's answer file, and returns one criterion per requirement.
"""

from __future__ import annotations

from flightdeck.guide.checks import automation, batch, experiments, platforms, serving
from flightdeck.guide.checks.base import Context, Criterion, Exercise

EXERCISES: dict[int, Exercise] = {e.number: e for e in (
    Exercise(1, "registry-tour", "Read the registry like a release manager", "overview", "01-overview.md",
             batch.check_01),
    Exercise(2, "score-a-day", "Score one day with the champion", "batch", "02-batch.md", batch.check_02),
    Exercise(3, "backfill-pinned", "Backfill three days with a pinned version", "batch", "02-batch.md",
             batch.check_03),
    Exercise(4, "pinned-endpoint", "Pin a version on an endpoint of its own", "real-time", "03-real-time.md",
             serving.check_04),
    Exercise(5, "stream-exactly-once", "Exactly one outcome per event, poison included", "streaming",
             "04-streaming.md", platforms.check_05),
    Exercise(6, "beta-bundle", "Publish a signed bundle to a beta cohort", "edge", "05-edge.md", platforms.check_06),
    Exercise(7, "beta-cohort", "Which devices take the beta?", "edge", "05-edge.md", platforms.check_07),
    Exercise(8, "lambda-break-even", "Find the Lambda break-even for your traffic", "serverless",
             "06-serverless.md", platforms.check_08),
    Exercise(9, "blue-green-cut-over", "Cut over from blue to green", "blue-green", "07-blue-green.md",
             serving.check_09),
    Exercise(10, "blue-green-rollback", "Roll back with one switch", "blue-green", "07-blue-green.md",
             serving.check_10),
    Exercise(11, "latency-drill", "A canary that rolls back on +20 ms", "canary", "08-canary.md", serving.check_11),
    Exercise(12, "canary-split", "Measure a 10 % canary's split", "canary", "08-canary.md", serving.check_12),
    Exercise(13, "aa-srm", "Explain an A/A test that trips the SRM check", "A/B testing", "09-ab-testing.md",
             experiments.check_13),
    Exercise(14, "sample-size", "Size an experiment before you start it", "A/B testing", "09-ab-testing.md",
             experiments.check_14),
    Exercise(15, "shadow-report", "Shadow the challenger and read the disagreement report", "shadow",
             "10-shadow.md", experiments.check_15),
    Exercise(16, "conditional-route", "Route young customers to the challenger", "multi-model",
             "11-multi-model.md", serving.check_16),
    Exercise(17, "ensemble-fallback", "An ensemble with a safety net", "multi-model", "11-multi-model.md",
             serving.check_17),
    Exercise(18, "batch-to-real-time", "Move a use case from batch to real time", "comparison",
             "12-comparison.md", automation.check_18),
    Exercise(19, "release-policy", "A release policy as code", "automation", "13-automation.md",
             automation.check_19),
    Exercise(20, "experiment-ships", "An experiment that ships itself", "automation", "13-automation.md",
             automation.check_20),
)}

__all__ = ["EXERCISES", "Context", "Criterion", "Exercise"]
