"""LLM expert layer: expert workflow (prompts, sandbox, retrieval, LLM backends), reference models, expert policy."""
