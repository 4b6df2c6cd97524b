"""The applications on top of the core, the model, training and serving: the `renda` command line,
archive labelling (local and Ray engines), the review queue and trend plots."""
