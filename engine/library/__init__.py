"""The user's models and fine-tuning runs: the model store and one-click fine-tuning."""
