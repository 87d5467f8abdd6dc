"""The agent engine: one request run through an agent's model, step by step."""
