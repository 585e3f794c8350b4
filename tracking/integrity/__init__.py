"""What SECURITY.md promises: encryption at rest, row MACs, the seal chain, verification,
retention that keeps the chain provable."""
