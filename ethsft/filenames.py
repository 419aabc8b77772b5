"""The names of the files ethsft writes, each declared once: every writer and every reader imports them from here.
This module imports nothing, so any package may import it."""

# `ethsft train`, into --output
RUN_MARKER_FILE = "ethsft_run.json"  # written first: the folder holds an ethsft run (what --overwrite may replace)
LOCK_FILE = ".ethsft.lock"  # pid and host of the run using the folder, while it runs
LOG_FILE = "training_logs.txt"  # the console lines
SUMMARY_FILE = "run_summary.json"  # written last: its presence marks a finished run
PLOT_FILE = "loss_curves.png"
CARD_FILE = "README.md"  # the model card, written into a folder before it is pushed to the Hub
SIDE_CARD_FILE = "ethsft_card.md"  # the card, where README.md is the user's own (kept, pushed as the repo's README)

# `ethsft evaluate`, into --output (default: <model dir>/eval-<dataset>)
PREDICTIONS_FILE = "predictions.jsonl"
METRICS_FILE = "metrics.json"

# `ethsft prepare`, beside the splits
PREPARE_SUMMARY_FILE = "prepare_summary.json"
REJECTS_FILE = "rejects.jsonl"

# `ethsft merge`, beside the merged model
MERGE_FILE = "ethsft_merge.json"
