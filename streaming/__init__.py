"""headwater's Spark side: Kafka -> bronze / silver / gold Delta tables.

Nothing here imports Dagster; every job runs under spark-submit as well as from the CLI.
"""
