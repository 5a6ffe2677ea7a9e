"""PyTorch/numpy reference tools: safetensors I/O, image preprocessing and the LLaVA reference model."""
