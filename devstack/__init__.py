"""The local platform around the pipeline: the services a laptop runs (Kafka, PostgreSQL,
Kafka Connect with Debezium, a Spark standalone cluster, the Dagster UI), the demo shop's
generators, the demo, and the `headwater` command line. The pipeline itself (streaming/)
imports none of it."""
