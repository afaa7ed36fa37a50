"""Models of the paper's workloads."""
