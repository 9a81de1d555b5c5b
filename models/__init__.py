"""The topic + sentiment model: one MiniLM encoder, two heads, one forward pass per text.

data (datasets) -> splits (seeded, leak-free) -> network (encoder + heads, model files)
-> train (resumable multi-task fine-tuning) -> calibrate (temperature, ECE) -> evaluate
-> card (model card); registry (versions in the store); engine (resident batched
inference); cli (``finsentry train | evaluate | classify | models``).
"""
