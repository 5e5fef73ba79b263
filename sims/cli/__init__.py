"""The `sims` command line: the app, its options and how runs are rendered."""
