"""What a campaign keeps of each round: the ledger (JSONL, the truth resume reads), the memory file and its
self-criticism (lessons), MLflow tracking (mlflow_io holds the store's URI, batching and key rules), the
objective read from a run, and the campaign's report.
"""
