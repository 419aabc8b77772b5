"""The names of the files ethsft writes, each declared once: every writer and every reader imports them from here.
This module imports nothing, so any package may import it."""

# `ethsft train`, into --output
LOG_FILE = "training_logs.txt"  # the console lines
SUMMARY_FILE = "run_summary.json"  # written last: its presence marks a finished run
PLOT_FILE = "loss_curves.png"
CARD_FILE = "README.md"  # the model card, written into a folder before it is pushed to the Hub

# `ethsft evaluate`, into --output (default: <model dir>/eval-<dataset>)
PREDICTIONS_FILE = "predictions.jsonl"
METRICS_FILE = "metrics.json"

# `ethsft prepare`, beside the splits
PREPARE_SUMMARY_FILE = "prepare_summary.json"
REJECTS_FILE = "rejects.jsonl"

# `ethsft merge`, beside the merged model
MERGE_FILE = "ethsft_merge.json"
