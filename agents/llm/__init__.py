"""The LLM expert: local models (assembly, batched and grammar-constrained decoding), free-text
preference extraction, the code-generation workflow and the sandbox that runs generated code."""
