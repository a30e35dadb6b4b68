"""Experiments: A/B statistics, sequential tests, sample-ratio checks, bandits and analyses.

Statistics (pure functions, no I/O):

* `inference` — fixed-horizon tests: two-proportion z, Welch t, the delta method for ratio
  metrics, CUPED with a pre-period covariate;
* `sequential` — always-valid inference (normal-mixture mSPRT and its confidence sequence)
  for looking at an experiment every day and stopping early;
* `design` — sample size, minimum detectable effect and power, fixed-horizon and sequential;
* `srm` — the sample-ratio-mismatch chi-square check (p < 0.001 blocks every decision);
* `multiple` — Holm for guardrails, Benjamini-Hochberg for the other metrics;
* `bandit` — a top-two Thompson-sampling bandit that writes its traffic weights to the
  gateway's route table.

Nothing is imported here so that `import flightdeck.experiments` stays cheap; import the
module you need.
"""
