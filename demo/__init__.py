"""The local file-watcher demo: moto (S3, SQS, KMS), the Fire Insights simulator and Airflow on loopback."""
