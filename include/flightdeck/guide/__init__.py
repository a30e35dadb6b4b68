"""The guide's commands: `flightdeck advise` (which pattern and release strategy fits a use case)
and `flightdeck exercises` (check a learner's work against the running system)."""
