"""Reference solutions of the guide's exercises (tests only; learners never see them)."""
