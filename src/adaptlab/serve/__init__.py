"""OpenAI-compatible serving: per-request adapters over one base, continuous batching, a terminal chat."""
