"""The OpenAI-compatible gateway between API clients and the model."""
