"""The LLM expert workflow (model editing, retrieval, code generation, repair, review, verification) and the sandbox that runs generated code."""
