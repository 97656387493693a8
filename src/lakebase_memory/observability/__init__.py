"""What a running server tells about itself: Prometheus metrics (`metrics`) and optional MLflow
tracing of each turn (`tracing`)."""
