"""Scale-out on Apache Flink: the rule specs compiled to a PyFlink SQL job (`compiler`,
`job_dir`), run on a local mini-cluster in Flink's own environment (`runner`), and checked
against the embedded detector (`parity`)."""
