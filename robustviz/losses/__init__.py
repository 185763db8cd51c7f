"""Training losses, one module per method: pure functions plus thin ``nn.Module`` wrappers."""
