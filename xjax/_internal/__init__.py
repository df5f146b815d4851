"""Private helpers shared across xjax (validation, batching). Never user-facing."""
