"""Bot delivery: test a trained model, record the verdict next to it, find what changed, run the pipeline."""
