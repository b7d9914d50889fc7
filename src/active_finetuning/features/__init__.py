"""Features: timm models with offline weights, and the extraction of a manifest's pooled features."""
