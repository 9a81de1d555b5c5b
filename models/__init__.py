"""The topic + sentiment model: one encoder, two heads, one forward pass per text.

data (datasets) -> splits (seeded, leak-free) -> encoders (base encoders; the MPNet teacher's
assembled and verified) -> network (encoder + heads, model files; files: what scoring needs
without torch) -> train (resumable multi-task fine-tuning) -> distil (teacher soft targets,
the distillation loss) -> calibrate (temperature, ECE) -> evaluate -> card (model card);
registry (versions in the store); engine (resident batched inference); cli (``finsentry
train | evaluate | classify | models``).
"""
