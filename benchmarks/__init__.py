"""Side-by-side benchmarks: each measures hybridmesh against a peer in the same run."""
