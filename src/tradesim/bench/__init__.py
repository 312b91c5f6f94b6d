"""`tradesim bench`: the benchmark suite, its budgets and the live-latency measurement."""
